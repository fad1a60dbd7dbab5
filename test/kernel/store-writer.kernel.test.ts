// The real kernel loads COW stores written by snapcow's PersistentStore (spec §9): the status
// line and the snapshot's content it reports must be the ones snapcow expects. Each case
// boots one VM (about 7–10 s under TCG); see test/kernel/oracle.ts.
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { FileDevice } from '../../io/file-device.js'
import { PersistentStore } from '../../io/cow-format/persistent-store.js'
import { asChunkSectors, asOldChunk, type NewChunk } from '../../io/units.js'
import { gen, parseCowIndependently, sha256 } from '../support/kernel-vectors.js'
import { kernelLoadSnapshot, oracleAvailable } from './oracle.js'

const oracle = oracleAvailable()

/** Origins of 8 or 16 MiB and one 4 KiB page: whole 4 KiB chunks, a partial last 16 KiB chunk. */
const SMALL_ORIGIN = (8 << 20) + 4096
const LARGE_ORIGIN = (16 << 20) + 4096

let dir = ''
beforeAll(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'snapcow-kernel-')) })
afterAll(async () => { if (dir !== '') await rm(dir, { recursive: true, force: true }) })

/** A deterministic stream of uint32s from a seed (the oracle's generator). */
function randomInts(seed: string, count: number): Uint32Array {
  return new Uint32Array(Uint8Array.from(gen(seed, count * 4)).buffer) // a copy: aligned, whatever the Buffer pool did
}

/** Fisher–Yates with the seeded stream. */
function shuffle<T>(items: T[], seed: string): T[] {
  const out = items.slice()
  const r = randomInts(seed, out.length)
  for (let i = out.length - 1; i > 0; i--) {
    const j = r[i]! % (i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

interface Built {
  originPath: string
  originSectors: number
  cowPath: string
  originalSha: string
  changedSha: string
  original: Buffer
  expectedStatus: string
  table: Array<[number, number]>
}

/**
 * Writes an origin image, then a COW store of `chunkSectors` that snapshots the origin chunks
 * `oldChunks` (copied and committed in that order, in group-commit batches of 1–16), then
 * overwrites those origin chunks, as origin writes after the copy would.
 */
async function build(name: string, originBytes: number, chunkSectors: number, cowBytes: number, oldChunks: number[],
  options: { invalidate?: boolean } = {}): Promise<Built> {
  const cs = asChunkSectors(chunkSectors)
  const chunkBytes = chunkSectors * 512
  const originPath = path.join(dir, `${name}-origin.img`)
  const cowPath = path.join(dir, `${name}-cow.img`)
  const originSectors = originBytes / 512
  const original = gen(`snapcow-kernel-${name}-origin`, originBytes)
  await writeFile(originPath, original)

  const origin = await FileDevice.open(originPath)
  const cow = await FileDevice.open(cowPath, { create: true, size: cowBytes })
  const store = await PersistentStore.create(cow, cs)
  const table: Array<[number, number]> = []
  const batchSizes = randomInts(`snapcow-kernel-${name}-batches`, oldChunks.length)
  for (let i = 0, b = 0; i < oldChunks.length; b++) {
    const batch = oldChunks.slice(i, i + 1 + (batchSizes[b]! % 16))
    i += batch.length
    // Allocate every chunk of the batch, copy them all, then commit them in allocation order
    // without waiting in between, so one area write covers several records (group commit).
    const allocated: Array<[number, NewChunk]> = batch.map((oldChunk) => {
      const newChunk = store.allocate()
      if (newChunk === undefined) throw new Error(`${name}: the COW is full at origin chunk ${oldChunk}`)
      return [oldChunk, newChunk]
    })
    await Promise.all(allocated.map(async ([oldChunk, newChunk]) => {
      // The last origin chunk may be partial: copy what exists, the rest of the COW chunk stays zero.
      const length = Math.min(chunkBytes, originBytes - oldChunk * chunkBytes)
      const data = new Uint8Array(length)
      await origin.read(oldChunk * chunkBytes, data)
      await cow.write(newChunk * chunkBytes, data)
    }))
    const results = await Promise.all(allocated.map(([oldChunk, newChunk]) => store.commit(asOldChunk(oldChunk), newChunk, true)))
    expect(results.every(Boolean), `${name}: every commit succeeds`).toBe(true)
    table.push(...allocated)
  }
  expect(store.outstanding).toBe(0)

  // Origin writes after the copies: the snapshot must now come from the COW for these chunks.
  const changed = Buffer.from(original)
  const fresh = gen(`snapcow-kernel-${name}-changed`, originBytes)
  for (const oldChunk of oldChunks) {
    const start = oldChunk * chunkBytes
    const end = Math.min(start + chunkBytes, originBytes)
    fresh.copy(changed, start, start, end)
    await origin.write(start, fresh.subarray(start, end))
  }
  await origin.flush()

  let expectedStatus: string
  if (options.invalidate) {
    await store.invalidate()
    expectedStatus = `0 ${originSectors} snapshot Invalid`
  } else {
    const u = store.usage()
    // The kernel's arithmetic for n records (README of the oracle): cs·(2 + n + ⌊n/E⌋) and cs·(2 + ⌊n/E⌋).
    const n = oldChunks.length
    const perArea = chunkBytes / 16
    expect(u.allocatedSectors).toBe(chunkSectors * (2 + n + Math.floor(n / perArea)))
    expect(u.metadataSectors).toBe(chunkSectors * (2 + Math.floor(n / perArea)))
    expect(u.totalSectors).toBe(cowBytes / 512)
    expectedStatus = `0 ${originSectors} snapshot ${u.allocatedSectors}/${u.totalSectors} ${u.metadataSectors}`
  }
  await cow.flush()
  await origin.close()
  await cow.close()

  // A plain parse of the image (no snapcow code) holds the records as committed.
  const image = await readFile(cowPath)
  const parsed = parseCowIndependently(image)
  expect(parsed).toMatchObject({ magic: 0x70416e53, valid: options.invalidate ? 0 : 1, version: 1, chunkSize: chunkSectors })
  expect(parsed.table).toEqual(table)

  return { originPath, originSectors, cowPath, original, originalSha: sha256(original), changedSha: sha256(changed), expectedStatus, table }
}

/** Indexes of the `chunkBytes` chunks in which two images differ. */
function differingChunks(a: Buffer, b: Buffer, chunkBytes: number): number[] {
  const out: number[] = []
  for (let off = 0; off < a.length; off += chunkBytes) {
    if (!a.subarray(off, off + chunkBytes).equals(b.subarray(off, off + chunkBytes))) out.push(off / chunkBytes)
  }
  return out
}

test('the dm-snapshot oracle is available (root, ../shared/oracle/run-vm.sh)', () => {
  expect(oracle.ok, oracle.why).toBe(true)
})

describe.skipIf(!oracle.ok)('Linux loads stores written by PersistentStore', () => {
  test('4 KiB chunks, 600 records over three metadata areas, group commits, content exported', async () => {
    const chunks = SMALL_ORIGIN / 4096 // 2049
    const runs = [range(0, 63), range(1000, 1127), range(2040, 2048)]
    const inRuns = new Set(runs.flat())
    const others = shuffle(range(0, chunks - 1).filter((c) => !inRuns.has(c)), 'cs8-others').slice(0, 600 - inRuns.size)
    const third = Math.floor(others.length / 3)
    const oldChunks = [
      ...runs[0]!, ...others.slice(0, third), ...runs[1]!, ...others.slice(third, 2 * third), ...runs[2]!, ...others.slice(2 * third),
    ]
    expect(new Set(oldChunks).size).toBe(600)

    const built = await build('cs8', SMALL_ORIGIN, 8, 4 << 20, oldChunks)
    // 256 records per area: areas 0 and 1 full, 88 records in area 2 (chunk 515); the last
    // origin chunk (2048) is in the table. 8·(2 + 600 + 2) allocated, 8·(2 + 2) metadata.
    expect(built.expectedStatus).toBe('0 16392 snapshot 4832/8192 32')
    const exported = path.join(dir, 'cs8-export.img')
    await writeFile(exported, '')
    await truncate(exported, SMALL_ORIGIN) // sparse, the origin's size: the kernel copies the snapshot onto it

    const k = await kernelLoadSnapshot({ origin: built.originPath, cow: built.cowPath, chunkSectors: 8, exportTo: exported })
    console.log(`kernel ${k.kernel}: status ${k.status}; snapshot ${k.checksum}; table ${k.table}`)
    const content = await readFile(exported)
    expect(differingChunks(content, built.original, 4096), 'origin chunks the kernel reads differently').toEqual([])
    expect(k.status).toBe(built.expectedStatus)
    expect(k.checksum).toBe(built.originalSha)
    expect(k.originChecksum).toBe(built.changedSha)
    expect(k.table).toMatch(/^0 16392 snapshot \S+ \S+ P 8$/)
  })

  test('16 KiB chunks, exactly one full metadata area (1024 records), a partial last origin chunk', async () => {
    // 1025 origin chunks of 16 KiB, the last one 4 KiB long; all but chunk 200, partly shuffled.
    const oldChunks = [...range(0, 99), ...shuffle(range(100, 700).filter((c) => c !== 200), 'cs32-middle'), ...range(701, 1024)]
    expect(new Set(oldChunks).size).toBe(1024)

    const built = await build('cs32', LARGE_ORIGIN, 32, 20 << 20, oldChunks)
    // 1024 records per area: area 0 full (COW chunks 2..1025), area 1 (chunk 1026) zeroed,
    // next free 1027: 32·(2 + 1024 + 1) allocated, 32·(2 + 1) metadata.
    expect(built.expectedStatus).toBe('0 32776 snapshot 32864/40960 96')

    const k = await kernelLoadSnapshot({ origin: built.originPath, cow: built.cowPath, chunkSectors: 32 })
    console.log(`kernel ${k.kernel}: status ${k.status}; snapshot ${k.checksum}; table ${k.table}`)
    expect(k.status).toBe(built.expectedStatus)
    expect(k.checksum).toBe(built.originalSha)
    expect(k.originChecksum).toBe(built.changedSha)
    expect(k.table).toMatch(/^0 32776 snapshot \S+ \S+ P 32$/)
  })

  test('an invalidated store loads as Invalid and cannot be read', async () => {
    const oldChunks = [...range(10, 19), ...shuffle(range(100, 2048), 'invalid').slice(0, 30)]
    const built = await build('invalid', SMALL_ORIGIN, 8, 1 << 20, oldChunks, { invalidate: true })

    const k = await kernelLoadSnapshot({ origin: built.originPath, cow: built.cowPath, chunkSectors: 8 })
    console.log(`kernel ${k.kernel}: status ${k.status}; snapshot ${k.checksum}; table ${k.table}`)
    expect(k.status).toBe('0 16392 snapshot Invalid')
    expect(k.checksum).toBe('read-error')
    expect(k.originChecksum).toBe(built.changedSha)
  })
})
