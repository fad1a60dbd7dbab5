// snapcow → kernel, merging: COW stores written by snapcow's ENGINE are merged into their
// origin by the real Linux snapshot-merge target, and the kernel's merged origin must be the
// snapshot content snapcow read before any merge began. Two VM boots (about 7–10 s each):
//   1. the store as the engine left it (514 exceptions over three metadata areas, the last
//      area holding only two records), merged by the kernel from the start;
//   2. the same store merged half way by snapcow itself (stopped through an AbortSignal after
//      three batches, which empties the last area and takes one record of the one before),
//      then finished by the kernel over the origin device exactly as snapcow left it.
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { openOrigin, type Origin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { FileDevice } from '../../io/file-device.js'
import { gen, parseCowIndependently, sha256 } from '../support/kernel-vectors.js'
import { SeededRandom } from '../support/seeded-random.js'
import { kernelMerge, oracleAvailable, type MergeResult } from './oracle.js'

const oracle = oracleAvailable()

const SEED = 'snapcow-merge-kernel'
const SECTOR = 512
const CHUNK = 4096
const CHUNK_SECTORS = CHUNK / SECTOR
/** Records per metadata area with 4 KiB chunks. */
const PER_AREA = CHUNK / 16
/** 16 MiB and one 4 KiB page. */
const ORIGIN_BYTES = (16 << 20) + 4096
const ORIGIN_CHUNKS = ORIGIN_BYTES / CHUNK
const COW_BYTES = 4 << 20
/** Two full metadata areas and two records in the third. */
const EXCEPTIONS = 2 * PER_AREA + 2
/** The random phase stops once this many chunks have exceptions; single-chunk writes fill up the rest. */
const RANDOM_PHASE_EXCEPTIONS = 470
/** A hot zone (in chunks) that random writes hit a quarter of the time, so chunks are written again. */
const HOT_FIRST = 1500
const HOT_CHUNKS = 64
/** snapcow's merge is stopped after this many batches. */
const STOP_AFTER_BATCHES = 3


interface PlannedWrite {
  target: 'origin' | 'snapshot'
  shape: 'aligned' | 'sub-chunk' | 'spanning'
  offset: number
  data: Buffer
}

/** Chunks that a write of `length` bytes at `offset` touches. */
function touchedChunks(offset: number, length: number): number[] {
  const out: number[] = []
  for (let c = Math.floor(offset / CHUNK); c * CHUNK < offset + length; c++) out.push(c)
  return out
}

/** One random write: whole chunks, a piece of one chunk, or a run across chunk boundaries. */
function randomWrite(random: SeededRandom, n: number): PlannedWrite {
  const target = random.below(100) < 70 ? 'origin' : 'snapshot'
  const shape = (['aligned', 'sub-chunk', 'spanning'] as const)[random.below(3)]!
  const chunk = random.below(100) < 25 ? HOT_FIRST + random.below(HOT_CHUNKS) : random.below(ORIGIN_CHUNKS)
  let offset: number
  let length: number
  if (shape === 'aligned') {
    offset = chunk * CHUNK
    length = random.between(1, 4) * CHUNK
  } else if (shape === 'sub-chunk') {
    const first = random.between(0, 7)
    offset = chunk * CHUNK + first * SECTOR
    length = random.between(1, Math.min(7, 8 - first)) * SECTOR
  } else {
    offset = chunk * CHUNK + random.between(1, 7) * SECTOR
    length = random.between(9, 40) * SECTOR
  }
  length = Math.min(length, ORIGIN_BYTES - offset)
  return { target, shape, offset, data: gen(`${SEED}-w${n}`, length) }
}

/**
 * The snapshot's content as a host-side overlay, sharing no code with snapcow: the origin
 * image with every COW data chunk of the (independently parsed) table put in its place.
 */
function overlay(originImage: Buffer, cowImage: Buffer): Buffer {
  const out = Buffer.from(originImage)
  for (const [oldChunk, newChunk] of parseCowIndependently(cowImage).table) {
    const start = oldChunk * CHUNK
    cowImage.copy(out, start, newChunk * CHUNK, newChunk * CHUNK + Math.min(CHUNK, out.length - start))
  }
  return out
}

/** The kernel's status lines for a persistent 4 KiB-chunk store of `n` records. */
function snapshotStatusLine(n: number): string {
  return `0 ${ORIGIN_BYTES / SECTOR} snapshot ${CHUNK_SECTORS * (2 + n + Math.floor(n / PER_AREA))}/` +
    `${COW_BYTES / SECTOR} ${CHUNK_SECTORS * (2 + Math.floor(n / PER_AREA))}`
}
const MERGED_STATUS = `0 ${ORIGIN_BYTES / SECTOR} snapshot-merge ${2 * CHUNK_SECTORS}/${COW_BYTES / SECTOR} ${2 * CHUNK_SECTORS}`

let dir = ''
/** The images right after the workload (both flushed), before any merge. */
let unmergedOrigin = ''
let unmergedCow = ''
/** The images as snapcow left them after the stopped merge (devices flushed and closed). */
let halfOrigin = ''
let halfCow = ''
/** The snapshot's content that snapcow read before the merge: what every merge must end with. */
let predicted = Buffer.alloc(0)
let predictedSha = ''
/** Initial origin + the snapshot's own writes. */
let model = Buffer.alloc(0)
const exceptionChunks = new Set<number>()
let statusBefore = ''
const counts: Record<string, number> = {}
/** What snapcow's stopped merge did. */
const stopped = {
  rejection: undefined as unknown,
  progress: [] as Array<{ merged: number; total: number }>,
  stateAfter: '',
  statusAfter: '',
  mergingVolumeSha: '',
  originDeviceSha: '',
}

/** Runs the workload through the engine, keeps the unmerged images, then merges part way. */
async function buildImages(): Promise<void> {
  dir = await mkdtemp(path.join(os.tmpdir(), 'snapcow-merge-kernel-'))
  const originPath = path.join(dir, 'origin.img')
  const cowPath = path.join(dir, 'cow.img')
  const initial = gen(`${SEED}-origin`, ORIGIN_BYTES)
  await writeFile(originPath, initial)
  model = Buffer.from(initial)

  const originDevice = await FileDevice.open(originPath)
  const cowDevice = await FileDevice.open(cowPath, { create: true, size: COW_BYTES })
  let origin: Origin | undefined
  try {
    origin = await openOrigin(originDevice)
    const snapshot: Snapshot = await origin.createSnapshot(cowDevice, { chunkSize: CHUNK, persistent: true })
    const apply = (w: PlannedWrite) => {
      if (w.target === 'snapshot') w.data.copy(model, w.offset)
      for (const c of touchedChunks(w.offset, w.data.length)) exceptionChunks.add(c)
      counts[`${w.target} ${w.shape}`] = (counts[`${w.target} ${w.shape}`] ?? 0) + 1
    }
    const issue = (w: PlannedWrite) => (w.target === 'origin' ? origin! : snapshot).write(w.offset, w.data)

    // Random phase: batches of up to 12 concurrent writes whose chunks are disjoint, so the
    // result does not depend on the order they complete in.
    const random = new SeededRandom(`${SEED}-plan`)
    let n = 0
    while (exceptionChunks.size < RANDOM_PHASE_EXCEPTIONS) {
      const batch: PlannedWrite[] = []
      const batchChunks = new Set<number>()
      const size = random.between(1, 12)
      while (batch.length < size && exceptionChunks.size < RANDOM_PHASE_EXCEPTIONS) {
        const w = randomWrite(random, n++)
        const chunks = touchedChunks(w.offset, w.data.length)
        if (chunks.some((c) => batchChunks.has(c))) break
        for (const c of chunks) batchChunks.add(c)
        batch.push(w)
        apply(w)
      }
      if (batch.length === 0) continue
      await Promise.all(batch.map(issue))
    }

    // Fill phase: one write at a time, each into one fresh chunk not next to the previous
    // one, alternately through the origin and the snapshot, until EXCEPTIONS. The last
    // records are then single-chunk merge batches, and the last area holds two of them.
    let previous = -10
    while (exceptionChunks.size < EXCEPTIONS) {
      const chunk = random.below(ORIGIN_CHUNKS)
      if (exceptionChunks.has(chunk) || Math.abs(chunk - previous) <= 1) continue
      previous = chunk
      const first = random.between(0, 6)
      const w: PlannedWrite = {
        target: exceptionChunks.size % 2 === 0 ? 'origin' : 'snapshot',
        shape: 'sub-chunk',
        offset: chunk * CHUNK + first * SECTOR,
        data: gen(`${SEED}-fill${chunk}`, random.between(1, 7 - first) * SECTOR),
      }
      apply(w)
      await issue(w)
    }

    await origin.flush()
    await snapshot.flush()
    predicted = Buffer.alloc(ORIGIN_BYTES)
    await snapshot.read(0, predicted)
    predictedSha = sha256(predicted)
    statusBefore = snapshot.status().line

    // Everything is written and flushed (FileDevice has no cache of its own): keep copies.
    unmergedOrigin = path.join(dir, 'unmerged-origin.img')
    unmergedCow = path.join(dir, 'unmerged-cow.img')
    await copyFile(originPath, unmergedOrigin)
    await copyFile(cowPath, unmergedCow)

    // snapcow merges STOP_AFTER_BATCHES batches, then is stopped between batches.
    const controller = new AbortController()
    let batches = 0
    try {
      await snapshot.merge({
        signal: controller.signal,
        onProgress: (p) => {
          stopped.progress.push(p)
          if (p.merged > 0 && ++batches === STOP_AFTER_BATCHES) controller.abort(new Error('stopped by the test'))
        },
      })
    } catch (error) {
      stopped.rejection = error
    }
    stopped.stateAfter = snapshot.status().state
    stopped.statusAfter = snapshot.status().line
    const through = Buffer.alloc(ORIGIN_BYTES)
    await origin.read(0, through) // the merging volume: must read as the snapshot
    stopped.mergingVolumeSha = sha256(through)
    await originDevice.read(0, through) // the origin device itself, half merged
    stopped.originDeviceSha = sha256(through)
  } finally {
    await origin?.close()
    await originDevice.flush()
    await cowDevice.flush()
    await cowDevice.close()
    await originDevice.close()
  }
  halfOrigin = originPath
  halfCow = cowPath
}

/** Copies two images for the kernel (it rewrites both) and merges them; logs what it reports. */
async function mergeInKernel(label: string, origin: string, cow: string): Promise<{ k: MergeResult; originCopy: string; cowCopy: string }> {
  const originCopy = path.join(dir, `${label}-kernel-origin.img`)
  const cowCopy = path.join(dir, `${label}-kernel-cow.img`)
  await copyFile(origin, originCopy)
  await copyFile(cow, cowCopy)
  const started = performance.now()
  const k = await kernelMerge({ origin: originCopy, cow: cowCopy, chunkSectors: CHUNK_SECTORS })
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  const lines = k.raw.split('\n').filter((l) => /^(status|table|merge-complete|checksum)/.test(l))
  console.log(`kernel ${k.kernel}, ${label} (${seconds} s):\n  ${lines.join('\n  ')}`)
  return { k, originCopy, cowCopy }
}

describe.skipIf(!oracle.ok)('Linux merges the COW stores that snapcow\'s engine wrote', () => {
  beforeAll(buildImages)
  afterAll(async () => { if (dir !== '') await rm(dir, { recursive: true, force: true }) })

  test('a whole store: the kernel\'s merged origin is the snapshot snapcow read', async () => {
    console.log(`workload: ${exceptionChunks.size} exceptions; snapcow status ${statusBefore}; writes ${JSON.stringify(counts)}`)
    for (const kind of ['origin aligned', 'origin sub-chunk', 'origin spanning', 'snapshot aligned', 'snapshot sub-chunk', 'snapshot spanning']) {
      expect(counts[kind] ?? 0, `writes: ${kind}`).toBeGreaterThan(10)
    }
    expect(predictedSha, 'snapcow reads the model (initial origin + snapshot writes)').toBe(sha256(model))
    expect(statusBefore).toBe(snapshotStatusLine(EXCEPTIONS))
    const parsed = parseCowIndependently(await readFile(unmergedCow))
    expect(parsed).toMatchObject({ magic: 0x70416e53, valid: 1, version: 1, chunkSize: CHUNK_SECTORS, lastArea: 2 })
    expect(new Set(parsed.table.map(([oldChunk]) => oldChunk))).toEqual(exceptionChunks)
    expect(parsed.table.length).toBe(EXCEPTIONS)
    expect(sha256(overlay(await readFile(unmergedOrigin), await readFile(unmergedCow))), 'host overlay of the images').toBe(predictedSha)

    const { k, cowCopy } = await mergeInKernel('whole', unmergedOrigin, unmergedCow)
    expect.soft(k.originChecksum, 'kernel merged origin vs the snapshot snapcow read').toBe(predictedSha)
    expect.soft(k.status, 'kernel status after the merge').toBe(MERGED_STATUS)
    await expectNoRecordsLeft(cowCopy)
  })

  test('a store snapcow merged part way: the kernel finishes it with the same origin', async () => {
    console.log(`snapcow stopped: progress ${JSON.stringify(stopped.progress)}; state ${stopped.stateAfter}; status ${stopped.statusAfter}; ` +
      `rejection ${String(stopped.rejection)}`)
    expect(stopped.rejection, 'merge() rejects when stopped').toBeInstanceOf(Error)
    expect((stopped.rejection as Error).message).toBe('stopped by the test')
    expect(stopped.stateAfter).toBe('merging')
    expect(stopped.progress.at(-1)?.total).toBe(EXCEPTIONS)
    const merged = stopped.progress.at(-1)!.merged
    expect(merged).toBeGreaterThan(0)
    expect(stopped.mergingVolumeSha, 'the stopped merging volume reads as the snapshot').toBe(predictedSha)
    expect(stopped.originDeviceSha, 'the origin device has changed').not.toBe(sha256(await readFile(unmergedOrigin)))

    const cow = await FileDevice.open(halfCow, { readOnly: true })
    let left: number
    try {
      const info = await readCowStore(cow)
      left = info.exceptions.length
      console.log(`half-merged store: ${left} records left of ${EXCEPTIONS}, ${info.metadataAreas} areas, next free ${info.nextFreeChunk}`)
      expect(info.valid).toBe(true)
    } finally {
      await cow.close()
    }
    expect(left).toBeGreaterThan(0)
    expect(left).toBeLessThan(EXCEPTIONS)
    expect(left).toBe(EXCEPTIONS - merged)
    const originImage = await readFile(halfOrigin)
    const cowImage = await readFile(halfCow)
    expect(sha256(originImage), 'origin image = what snapcow read from the device').toBe(stopped.originDeviceSha)
    const parsed = parseCowIndependently(cowImage)
    expect(parsed.table.length).toBe(left)
    expect(parsed.lastArea, 'the emptied third area is left behind').toBe(1)
    expect(sha256(overlay(originImage, cowImage)), 'host overlay of the half-merged images').toBe(predictedSha)

    const { k, cowCopy } = await mergeInKernel('half', halfOrigin, halfCow)
    expect.soft(k.originChecksum, 'kernel merged origin vs the snapshot snapcow read before merging').toBe(predictedSha)
    expect.soft(k.status, 'kernel status after the merge').toBe(MERGED_STATUS)
    await expectNoRecordsLeft(cowCopy)
  })
})

/** The kernel's merge leaves no record in the COW (spec §9.8). */
async function expectNoRecordsLeft(cowPath: string): Promise<void> {
  const after = await FileDevice.open(cowPath, { readOnly: true })
  try {
    expect.soft((await readCowStore(after)).exceptions, 'records left in the kernel-merged COW').toEqual([])
  } finally {
    await after.close()
  }
}
