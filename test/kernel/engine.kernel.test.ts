// snapcow → kernel: COW stores written by snapcow's ENGINE (openOrigin, createSnapshot, origin
// and snapshot writes) load in the real Linux dm-snapshot with the status line snapcow reports
// and the content snapcow reads. Three snapshots of one 40 MiB origin (chunks of 4, 16 and
// 8 KiB, the last one a 'PO' store), made at different moments; writes of every shape (whole
// chunks, 512-byte pieces of a chunk, writes across chunk boundaries), many of them
// concurrent; every store spans several metadata areas. Each COW is then loaded by the kernel
// over the same final origin image: one VM boot per snapshot (about 7–10 s each).
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { openOrigin, type Origin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import { FileDevice } from '../../io/file-device.js'
import { gen, parseCowIndependently, sha256 } from '../support/kernel-vectors.js'
import { SeededRandom } from '../support/seeded-random.js'
import { kernelLoadSnapshot, oracleAvailable } from './oracle.js'

const oracle = oracleAvailable()

const SEED = 'snapcow-engine-kernel'
const SECTOR = 512
/** 40 MiB and one 4 KiB page: whole 4 KiB chunks, a partial last 8 and 16 KiB chunk. */
const ORIGIN_BYTES = (40 << 20) + 4096

/** The snapshots, in the order they are made, each just before write pass `createdBeforePass`. */
const SNAPSHOTS = [
  { name: 'cs8', chunkSize: 4096, cowBytes: 48 << 20, overflow: false, createdBeforePass: 0 },
  { name: 'cs32', chunkSize: 16384, cowBytes: 48 << 20, overflow: false, createdBeforePass: 1 },
  { name: 'cs16-PO', chunkSize: 8192, cowBytes: 24 << 20, overflow: true, createdBeforePass: 2 },
] as const

/**
 * The write passes. Each pass walks the origin once from start to end, so its writes never
 * overlap one another (whatever order they complete in, the result is the same); `gapPercent`
 * is how often a stretch of the origin is skipped, `targets` the relative weights of the origin
 * and the snapshots existing by then (in SNAPSHOTS order).
 */
const PASSES = [
  { gapPercent: 55, targets: [80, 20] },
  { gapPercent: 8, targets: [76, 12, 12] },
  { gapPercent: 75, targets: [60, 10, 10, 20] },
] as const

type Shape = 'aligned' | 'sub-chunk' | 'spanning'

interface PlannedWrite {
  /** 0: the origin; i > 0: SNAPSHOTS[i - 1]. */
  target: number
  shape: Shape
  offset: number
  data: Buffer
}

const alignUp = (n: number, to: number): number => Math.ceil(n / to) * to

/**
 * One walk over the origin: writes of the three shapes with the chunk sizes of the snapshots
 * (4, 8 or 16 KiB for "aligned"), to the origin or a snapshot, never overlapping.
 */
function planPass(pass: number, random: SeededRandom): PlannedWrite[] {
  const { gapPercent, targets } = PASSES[pass]!
  const chunkSizes = SNAPSHOTS.map((s) => s.chunkSize)
  const writes: PlannedWrite[] = []
  let cursor = 0
  for (let n = 0; cursor < ORIGIN_BYTES; n++) {
    if (random.below(100) < gapPercent) {
      cursor += random.between(1, 64) * SECTOR // skip 512 B to 32 KiB
      continue
    }
    const shape = (['aligned', 'sub-chunk', 'spanning'] as const)[random.pick([40, 35, 25])]!
    const chunk = chunkSizes[random.below(chunkSizes.length)]!
    let offset: number
    let length: number
    if (shape === 'aligned') {
      offset = alignUp(cursor, chunk)
      length = random.between(1, 3) * chunk
    } else if (shape === 'sub-chunk') {
      // Inside one 4 KiB chunk (so inside a chunk of every snapshot), not all of it.
      offset = cursor
      const room = (alignUp(offset + 1, 4096) - offset) / SECTOR
      if (room === 8) offset += random.between(0, 7) * SECTOR
      const left = (alignUp(offset + 1, 4096) - offset) / SECTOR
      length = random.between(1, Math.min(left, 7)) * SECTOR
    } else {
      // Starts inside a chunk, crosses one or more boundaries of the larger chunk sizes too.
      offset = alignUp(cursor, SECTOR) + (alignUp(cursor, 4096) === cursor ? random.between(1, 7) * SECTOR : 0)
      length = random.between(9, 80) * SECTOR
    }
    length = Math.min(length, ORIGIN_BYTES - offset)
    if (length <= 0) break
    const target = random.pick(targets)
    writes.push({ target, shape, offset, data: gen(`${SEED}-p${pass}-w${n}`, length) })
    cursor = offset + length
  }
  return writes
}

/** Chunks (of `chunkBytes`) that a write of `length` bytes at `offset` touches. */
function touchedChunks(offset: number, length: number, chunkBytes: number): number[] {
  const out: number[] = []
  for (let c = Math.floor(offset / chunkBytes); c * chunkBytes < offset + length; c++) out.push(c)
  return out
}

/** Indexes of the `chunkBytes` chunks in which two images differ. */
function differingChunks(a: Uint8Array, b: Uint8Array, chunkBytes: number): number[] {
  const out: number[] = []
  for (let off = 0; off < Math.max(a.length, b.length); off += chunkBytes) {
    if (!Buffer.from(a.subarray(off, off + chunkBytes)).equals(b.subarray(off, off + chunkBytes))) out.push(off / chunkBytes)
  }
  return out
}

interface BuiltSnapshot {
  name: string
  chunkSectors: number
  overflow: boolean
  cowPath: string
  /** snapshot.status().line after the last write and the flushes, before closing. */
  statusLine: string
  /** What the kernel's arithmetic gives for the model's exception count. */
  modelStatusLine: string
  /** SHA-256 of the whole snapshot as snapcow read it before closing. */
  snapcowSha: string
  snapcowContent: Buffer
  /** The model: the origin when the snapshot was made, plus the snapshot's own writes. */
  model: Buffer
  /** Old chunks that must be in the store: chunks of later origin writes and of its own writes. */
  exceptions: Set<number>
  /** Writes it saw, by shape: its own, and origin writes after it was made. */
  writeCounts: Record<string, number>
}

let dir = ''
let originPath = ''
let finalOrigin: Buffer = Buffer.alloc(0)
let snapcowOriginSha = ''
const built: BuiltSnapshot[] = []

/** Runs the whole workload through the engine and records what snapcow reports. */
async function buildImages(): Promise<void> {
  dir = await mkdtemp(path.join(os.tmpdir(), 'snapcow-engine-kernel-'))
  originPath = path.join(dir, 'origin.img')
  const model = gen(`${SEED}-origin`, ORIGIN_BYTES) // the origin as the test expects it
  await writeFile(originPath, model)

  const originDevice = await FileDevice.open(originPath)
  const cowDevices: FileDevice[] = []
  const origin: Origin = await openOrigin(originDevice)
  const snapshots: Snapshot[] = []
  const random = new SeededRandom(`${SEED}-plan`)
  try {
    for (let pass = 0; pass < PASSES.length; pass++) {
      for (const [i, spec] of SNAPSHOTS.entries()) {
        if (spec.createdBeforePass !== pass) continue
        const cowPath = path.join(dir, `${spec.name}-cow.img`)
        const cow = await FileDevice.open(cowPath, { create: true, size: spec.cowBytes })
        cowDevices.push(cow)
        snapshots.push(await origin.createSnapshot(cow, { chunkSize: spec.chunkSize, persistent: true, overflow: spec.overflow }))
        built.push({
          name: spec.name, chunkSectors: spec.chunkSize / SECTOR, overflow: spec.overflow, cowPath,
          statusLine: '', modelStatusLine: '', snapcowSha: '', snapcowContent: Buffer.alloc(0),
          model: Buffer.from(model), exceptions: new Set(), writeCounts: {},
        })
        expect(snapshots.length).toBe(i + 1)
      }

      // Neighbouring writes often run together (same chunk, same pending exception): shuffle
      // within windows of 48, then issue batches of 1–16 without awaiting in between.
      const planned = planPass(pass, random)
      const order: PlannedWrite[] = []
      for (let i = 0; i < planned.length; i += 48) order.push(...random.shuffle(planned.slice(i, i + 48)))
      for (let i = 0; i < order.length;) {
        const batch = order.slice(i, i + random.between(1, 16))
        i += batch.length
        await Promise.all(batch.map((w) => (w.target === 0 ? origin : snapshots[w.target - 1]!).write(w.offset, w.data)))
      }

      // The model: origin writes change the origin and make exceptions in every snapshot; a
      // snapshot's writes change that snapshot only.
      for (const w of planned) {
        if (w.target === 0) {
          w.data.copy(model, w.offset)
          for (const b of built) {
            for (const c of touchedChunks(w.offset, w.data.length, b.chunkSectors * SECTOR)) b.exceptions.add(c)
            b.writeCounts[`origin ${w.shape}`] = (b.writeCounts[`origin ${w.shape}`] ?? 0) + 1
          }
        } else {
          const b = built[w.target - 1]!
          w.data.copy(b.model, w.offset)
          for (const c of touchedChunks(w.offset, w.data.length, b.chunkSectors * SECTOR)) b.exceptions.add(c)
          b.writeCounts[`own ${w.shape}`] = (b.writeCounts[`own ${w.shape}`] ?? 0) + 1
        }
      }
    }

    await origin.flush()
    for (const s of snapshots) await s.flush()

    const originContent = new Uint8Array(ORIGIN_BYTES)
    await origin.read(0, originContent)
    snapcowOriginSha = sha256(originContent)
    finalOrigin = model
    for (const [i, s] of snapshots.entries()) {
      const b = built[i]!
      const content = Buffer.alloc(ORIGIN_BYTES)
      await s.read(0, content)
      b.snapcowContent = content
      b.snapcowSha = sha256(content)
      b.statusLine = s.status().line
      // The kernel's arithmetic for n records, E per area: cs·(2 + n + ⌊n/E⌋) allocated, cs·(2 + ⌊n/E⌋) metadata.
      const n = b.exceptions.size
      const perArea = (b.chunkSectors * SECTOR) / 16
      const spec = SNAPSHOTS[i]!
      b.modelStatusLine = `0 ${ORIGIN_BYTES / SECTOR} snapshot ${b.chunkSectors * (2 + n + Math.floor(n / perArea))}/` +
        `${spec.cowBytes / SECTOR} ${b.chunkSectors * (2 + Math.floor(n / perArea))}`
    }
  } finally {
    await origin.close()
    for (const cow of cowDevices) await cow.close()
    await originDevice.close()
  }
}

describe.skipIf(!oracle.ok)('Linux loads the snapshots that snapcow\'s engine made', () => {
  beforeAll(buildImages)
  afterAll(async () => { if (dir !== '') await rm(dir, { recursive: true, force: true }) })

  test('the workload has every shape, the stores span several metadata areas, snapcow reads the model', () => {
    expect(snapcowOriginSha, 'snapcow reads the origin as the model').toBe(sha256(finalOrigin))
    for (const b of built) {
      const perArea = (b.chunkSectors * SECTOR) / 16
      console.log(`${b.name}: ${b.exceptions.size} exceptions (${perArea} per area); status ${b.statusLine}; ` +
        `writes ${JSON.stringify(b.writeCounts)}`)
      expect(b.exceptions.size, `${b.name}: more than two metadata areas`).toBeGreaterThan(2 * perArea)
      for (const shape of ['aligned', 'sub-chunk', 'spanning']) {
        expect(b.writeCounts[`origin ${shape}`] ?? 0, `${b.name}: origin writes, ${shape}`).toBeGreaterThan(10)
        expect(b.writeCounts[`own ${shape}`] ?? 0, `${b.name}: own writes, ${shape}`).toBeGreaterThan(10)
      }
      expect(differingChunks(b.snapcowContent, b.model, b.chunkSectors * SECTOR), `${b.name}: chunks snapcow reads unlike the model`).toEqual([])
      expect(b.snapcowSha).toBe(sha256(b.model))
      expect(b.statusLine, `${b.name}: status against the model's exception count`).toBe(b.modelStatusLine)
    }
  })

  test.each(SNAPSHOTS.map((s, i) => [s.name, i] as const))('the kernel loads %s over the final origin', async (name, i) => {
    const b = built[i]!
    // A plain parse of the COW (no snapcow code): the records are exactly the model's exceptions.
    const parsed = parseCowIndependently(await readFile(b.cowPath))
    expect(parsed).toMatchObject({ magic: 0x70416e53, valid: 1, version: 1, chunkSize: b.chunkSectors })
    expect(new Set(parsed.table.map(([oldChunk]) => oldChunk)), `${name}: old chunks in the store`).toEqual(b.exceptions)
    expect(parsed.table.length, `${name}: one record per old chunk`).toBe(b.exceptions.size)

    const exported = path.join(dir, `${name}-export.img`)
    await writeFile(exported, '')
    await truncate(exported, ORIGIN_BYTES) // sparse: the kernel copies the snapshot onto it
    const k = await kernelLoadSnapshot({
      origin: originPath, cow: b.cowPath, chunkSectors: b.chunkSectors, store: b.overflow ? 'PO' : 'P', exportTo: exported,
    })
    console.log(`kernel ${k.kernel}: ${name}: status ${k.status}; snapshot ${k.checksum}; table ${k.table}`)
    const kernelContent = await readFile(exported)
    const chunkBytes = b.chunkSectors * SECTOR
    expect.soft(differingChunks(kernelContent, b.snapcowContent, chunkBytes), `${name}: chunks the kernel reads unlike snapcow`).toEqual([])
    expect.soft(differingChunks(kernelContent, b.model, chunkBytes), `${name}: chunks the kernel reads unlike the model`).toEqual([])
    expect.soft(k.status, `${name}: kernel status vs snapcow's`).toBe(b.statusLine)
    expect.soft(k.checksum, `${name}: kernel checksum vs snapcow's read`).toBe(b.snapcowSha)
    expect.soft(k.checksum, `${name}: kernel checksum vs the model`).toBe(sha256(b.model))
    expect.soft(k.originChecksum, `${name}: the origin under snapshot-origin`).toBe(sha256(finalOrigin))
    expect.soft(k.table).toMatch(new RegExp(`^0 ${ORIGIN_BYTES / SECTOR} snapshot \\S+ \\S+ ${b.overflow ? 'PO' : 'P'} ${b.chunkSectors}$`))
  })
})
