// Merging a snapshot into its origin (spec §12, §9.8): the kernel's merge vector, progress,
// stopping and resuming, other snapshots untouched, and the flush before each commit.
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { gen, kernelVectors, sha256 } from '../support/kernel-vectors.js'
import { RecordingDevice } from '../support/recording-device.js'
import fs from 'node:fs'
import path from 'node:path'

const vector = kernelVectors().find((v) => v.manifest.merge !== undefined)!
const m = vector.manifest

function originAfter(): Buffer {
  const after = gen(m.origin.seed, m.origin.bytes)
  for (const line of fs.readFileSync(path.join(vector.dir, 'workload.txt'), 'utf8').split('\n')) {
    const [op, off, len, seed] = line.trim().split(/\s+/)
    if (op === 'W') gen(seed!, Number(len)).copy(after, Number(off))
  }
  return after
}

async function readAll(device: { size: number; read(o: number, b: Uint8Array): Promise<void> }) {
  const bytes = new Uint8Array(device.size)
  await device.read(0, bytes)
  return bytes
}

describe('the kernel\'s merge vector (cs8-merged)', () => {
  test('gives the kernel\'s merged origin, merged COW and status line', async () => {
    const originDevice = MemoryDevice.from(originAfter())
    const cow = MemoryDevice.from(vector.cow())
    const origin = await openOrigin(originDevice)
    const snapshot = await origin.loadSnapshot(cow)
    const progress: Array<{ merged: number; total: number }> = []
    await snapshot.merge({ onProgress: (p) => progress.push(p) })
    expect(sha256(originDevice.snapshotBytes())).toBe(m.merge!.origin_after_merge_sha256)
    expect(sha256(cow.snapshotBytes())).toBe(m.merge!.cow_merged_sha256)
    expect(snapshot.status().line).toBe(m.merge!.status_merged)
    expect(snapshot.status().state).toBe('merged')
    expect(progress.at(-1)).toEqual({ merged: m.cow.exceptions, total: m.cow.exceptions })
    expect(progress.length).toBeGreaterThan(2) // at least once per batch
    expect(origin.snapshots).toEqual([])
    await expect(snapshot.read(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'SNAPCOW_DETACHED' })
  })

  test('stopped half way, the origin reads as the snapshot; a reload resumes and ends the same', async () => {
    const originDevice = MemoryDevice.from(originAfter())
    const cow = MemoryDevice.from(vector.cow())
    const origin = await openOrigin(originDevice)
    const snapshot = await origin.loadSnapshot(cow)
    const controller = new AbortController()
    let batches = 0
    const progress: Array<{ merged: number; total: number }> = []
    await expect(snapshot.merge({
      signal: controller.signal,
      onProgress: (p) => { progress.push(p); if (p.merged > 0 && ++batches === 3) controller.abort(new Error('stop here')) },
    })).rejects.toThrow('stop here')
    expect(snapshot.status().state).toBe('merging')
    expect(sha256(await readAll(origin))).toBe(m.sha256.snapshot_final) // the merging volume
    expect(progress.at(-1)!.merged).toBeLessThan(m.cow.exceptions)
    // A restart: load the half-merged COW again and finish.
    const again = await openOrigin(MemoryDevice.from(originDevice.snapshotBytes()))
    const cowAgain = MemoryDevice.from(cow.snapshotBytes())
    const reloaded = await again.loadSnapshot(cowAgain)
    await reloaded.merge()
    expect(sha256(await readAll(again))).toBe(m.merge!.origin_after_merge_sha256)
    expect(sha256(cowAgain.snapshotBytes())).toBe(m.merge!.cow_merged_sha256)
  })
})

test('the origin is flushed before every merge commit', async () => {
  const originDevice = new RecordingDevice(MemoryDevice.from(originAfter()))
  const cow = new RecordingDevice(MemoryDevice.from(vector.cow()))
  const origin = await openOrigin(originDevice)
  const snapshot = await origin.loadSnapshot(cow)
  const events: string[] = []
  const mark = (who: string, device: RecordingDevice) => {
    const write = device.write.bind(device)
    const flush = device.flush.bind(device)
    device.write = async (o, d) => { events.push(`${who} write ${o}`); return write(o, d) }
    device.flush = async () => { events.push(`${who} flush`); return flush() }
  }
  mark('origin', originDevice)
  mark('cow', cow)
  await snapshot.merge()
  // Each metadata-area write of the COW (a merge commit) comes after an origin flush that
  // follows the batch's origin write.
  const areaWrites = events.flatMap((e, i) => (/^cow write (4096|1056768)$/.test(e) ? [i] : []))
  expect(areaWrites.length).toBeGreaterThan(2)
  for (const i of areaWrites) {
    const lastOriginWrite = events.slice(0, i).findLastIndex((e) => e.startsWith('origin write'))
    const lastOriginFlush = events.slice(0, i).findLastIndex((e) => e === 'origin flush')
    expect(lastOriginFlush, `commit at event ${i}`).toBeGreaterThan(lastOriginWrite)
  }
})

test('origin I/O and another snapshot keep working during a merge; the other never changes', async () => {
  const originDevice = MemoryDevice.from(originAfter())
  const origin = await openOrigin(originDevice)
  const merging = await origin.loadSnapshot(MemoryDevice.from(vector.cow()))
  const other = await origin.createSnapshot(new MemoryDevice(8 << 20), { chunkSize: 16384 })
  const otherBefore = sha256(await readAll(other))
  const expected = Buffer.from(await readAll(merging)) // what the origin must end as, plus our writes
  const merge = merging.merge()
  const writes: Array<Promise<void>> = []
  for (let i = 0; i < 40; i++) {
    const offset = ((i * 7919) % 4000) * 4096
    const data = new Uint8Array(4096).fill(i + 1)
    expected.set(data, offset)
    writes.push(origin.write(offset, data))
  }
  await Promise.all([merge, ...writes])
  expect(Buffer.from(await readAll(origin)).equals(expected)).toBe(true)
  expect(sha256(await readAll(other))).toBe(otherBefore)
})

test('an error stops the merge: Merge failed, held writes fail clearly, I/O goes on as §12 says', async () => {
  const { ControlledDevice, settle } = await import('../support/controlled-device.js')
  const originDevice = MemoryDevice.from(originAfter())
  const cow = new ControlledDevice(MemoryDevice.from(vector.cow()), 'cow')
  cow.passThrough = () => true
  const origin = await openOrigin(originDevice)
  const snapshot = await origin.loadSnapshot(cow)
  const before = Buffer.from(await readAll(snapshot))
  // The last record of the table is the first batch's last chunk.
  const table = (await import('../../io/cow-format/read-cow-store.js'))
  const [lastOld, lastNew] = (await table.readCowStore(cow.inner)).exceptions.at(-1)!
  cow.passThrough = (op, offset) => !(op === 'read' && offset <= lastNew * 4096 && offset > 2 * 4096) // park the batch copy's read
  const merge = snapshot.merge()
  await settle()
  const parked = cow.find('read')
  expect(parked.length).toBe(1)
  const held = origin.write(lastOld * 4096, new Uint8Array(4096).fill(9)) // into the batch: held
  await settle()
  parked[0]!.fail()
  await expect(merge).rejects.toThrow()
  await expect(held).rejects.toMatchObject({ code: 'SNAPCOW_MERGE_FAILED' })
  expect(snapshot.status().state).toBe('merge-failed')
  expect(snapshot.status().line).toBe(`0 ${m.origin.sectors} snapshot-merge Merge failed`)
  cow.passThrough = () => true
  expect(Buffer.from(await readAll(origin)).equals(before)).toBe(true) // still the snapshot's content
  await origin.write(0, new Uint8Array(4096).fill(7)) // and writes work
  const first = new Uint8Array(4096)
  await origin.read(0, first)
  expect(first[0]).toBe(7)
})

test('stopped, then merge() again on the same snapshot goes on from where it stopped', async () => {
  const originDevice = MemoryDevice.from(originAfter())
  const cow = MemoryDevice.from(vector.cow())
  const origin = await openOrigin(originDevice)
  const snapshot = await origin.loadSnapshot(cow)
  const controller = new AbortController()
  await expect(snapshot.merge({ signal: controller.signal, onProgress: ({ merged }) => { if (merged > 0) controller.abort() } }))
    .rejects.toBeDefined()
  const resumed: Array<{ merged: number; total: number }> = []
  await snapshot.merge({ onProgress: (p) => resumed.push(p) })
  expect(resumed[0]!.total).toBeLessThan(m.cow.exceptions) // only what was left
  expect(resumed.at(-1)!.merged).toBe(resumed[0]!.total)
  expect(sha256(originDevice.snapshotBytes())).toBe(m.merge!.origin_after_merge_sha256)
  expect(sha256(cow.snapshotBytes())).toBe(m.merge!.cow_merged_sha256)
  expect(snapshot.status().state).toBe('merged')
})

test('progress is reported once at the start and once per committed batch', async () => {
  const cow = new RecordingDevice(MemoryDevice.from(vector.cow()))
  const origin = await openOrigin(MemoryDevice.from(originAfter()))
  const snapshot = await origin.loadSnapshot(cow)
  cow.ops.length = 0
  const progress: number[] = []
  await snapshot.merge({ onProgress: ({ merged }) => progress.push(merged) })
  const commits = cow.ops.filter((o) => o.op === 'write').length // one area write per batch
  expect(progress.length).toBe(commits + 1)
  expect(progress).toEqual([...progress].sort((a, b) => a - b))
})
