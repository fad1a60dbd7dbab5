// Snapshot.extents() (api.md: ordered runs, read from the COW or through to the origin) and
// the snapshots' stable names (the `name` option of createSnapshot and loadSnapshot).
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import { seededRandom } from '../support/delayed-device.js'

const CHUNK = 4096

/** The runs extents() must give, built the slow way: one chunkState() per chunk. */
function expectedRuns(s: Snapshot, offset: number, length: number) {
  const runs: Array<{ offset: number; length: number; inCow: boolean }> = []
  for (let at = offset; at < offset + length;) {
    const chunk = Math.floor(at / s.chunkSize)
    const to = Math.min((chunk + 1) * s.chunkSize, offset + length)
    const state = s.chunkState(chunk)
    const inCow = state === 'Completed' || state === 'CompletedWithReaders'
    const prev = runs.at(-1)
    if (prev !== undefined && prev.inCow === inCow) prev.length += to - at
    else runs.push({ offset: at, length: to - at, inCow })
    at = to
  }
  return runs
}

describe('extents()', () => {
  test('a fresh snapshot reads everything through to the origin; copied chunks show as COW runs', async () => {
    const origin = await openOrigin(new MemoryDevice(16 * CHUNK))
    const s = await origin.createSnapshot(new MemoryDevice(32 * CHUNK), { chunkSize: CHUNK })
    expect(s.extents()).toEqual([{ offset: 0, length: 16 * CHUNK, inCow: false }])
    await origin.write(2 * CHUNK, new Uint8Array(2 * CHUNK).fill(1))
    await origin.write(7 * CHUNK + 512, new Uint8Array(512).fill(2))
    expect(s.extents()).toEqual([
      { offset: 0, length: 2 * CHUNK, inCow: false },
      { offset: 2 * CHUNK, length: 2 * CHUNK, inCow: true },
      { offset: 4 * CHUNK, length: 3 * CHUNK, inCow: false },
      { offset: 7 * CHUNK, length: CHUNK, inCow: true },
      { offset: 8 * CHUNK, length: 8 * CHUNK, inCow: false },
    ])
    // A range that starts and ends inside chunks is cut there.
    expect(s.extents(3 * CHUNK + 1024, 2 * CHUNK)).toEqual([
      { offset: 3 * CHUNK + 1024, length: CHUNK - 1024, inCow: true },
      { offset: 4 * CHUNK, length: CHUNK + 1024, inCow: false },
    ])
    expect(s.extents(5 * CHUNK, 0)).toEqual([])
  })

  test.each([
    ['dense range (one probe a chunk)', 256 * 1024, 512],
    ['sparse range (a walk over the exceptions)', 64 << 20, 512],
  ])('random writes: the runs equal one chunkState() per chunk, %s', async (_name, originBytes, chunkSize) => {
    const random = seededRandom(originBytes)
    const origin = await openOrigin(new MemoryDevice(originBytes))
    const s = await origin.createSnapshot(new MemoryDevice(originBytes), { chunkSize, persistent: false })
    const chunks = originBytes / chunkSize
    for (let i = 0; i < 40; i++) {
      const chunk = Math.floor(random() * chunks)
      await origin.write(chunk * chunkSize, new Uint8Array(chunkSize))
    }
    for (const [offset, length] of [[0, originBytes], [chunkSize * 3 + 512, originBytes / 2]] as const) {
      expect(s.extents(offset, length)).toEqual(expectedRuns(s, offset, length))
    }
  })

  test('refusals: a range outside the snapshot (RangeError), an invalid or dropped snapshot (its error)', async () => {
    const origin = await openOrigin(new MemoryDevice(8 * CHUNK))
    const s = await origin.createSnapshot(new MemoryDevice(3 * CHUNK), { chunkSize: CHUNK }) // room for one chunk
    expect(() => s.extents(9 * CHUNK)).toThrow(RangeError)
    expect(() => s.extents(0, 9 * CHUNK)).toThrow(/runs outside/)
    await origin.write(0, new Uint8Array(CHUNK))
    await origin.write(CHUNK, new Uint8Array(CHUNK)) // no room: Invalid
    expect(() => s.extents()).toThrow(expect.objectContaining({ code: 'SNAPCOW_INVALID' }))
    const t = await origin.createSnapshot(new MemoryDevice(8 * CHUNK), { chunkSize: CHUNK })
    await t.drop()
    expect(() => t.extents()).toThrow(expect.objectContaining({ code: 'SNAPCOW_DETACHED' }))
  })
})

describe('names', () => {
  test('a snapshot is named as asked, else by its id; a loaded one too', async () => {
    const origin = await openOrigin(new MemoryDevice(8 * CHUNK))
    const cow = new MemoryDevice(8 * CHUNK)
    const plain = await origin.createSnapshot(new MemoryDevice(8 * CHUNK))
    expect(plain.name).toBe(plain.id)
    const monday = await origin.createSnapshot(cow, { name: 'monday' })
    expect(monday.name).toBe('monday')
    await monday.drop()
    expect((await origin.loadSnapshot(cow, { name: 'monday-again' })).name).toBe('monday-again')
  })

  test('a name already used, or not a non-empty string, is a TypeError before any I/O', async () => {
    const origin = await openOrigin(new MemoryDevice(8 * CHUNK))
    await origin.createSnapshot(new MemoryDevice(8 * CHUNK), { name: 'daily' })
    const cow = new MemoryDevice(8 * CHUNK)
    await expect(origin.createSnapshot(cow, { name: 'daily' })).rejects.toThrow(/"daily" is already the name of snapshot snap-1/)
    await expect(origin.createSnapshot(cow, { name: '' })).rejects.toThrow(TypeError)
    await expect(origin.createSnapshot(cow, { name: 7 as never })).rejects.toThrow(/name must be a non-empty string/)
    expect(cow.snapshotBytes().every((b) => b === 0)).toBe(true)
    await expect(origin.createSnapshot(cow, { name: 'weekly' })).resolves.toBeDefined() // the refusals claimed nothing
  })
})
