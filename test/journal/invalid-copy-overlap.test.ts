// Rule 2 (byte-exact replay) against spec §13 (invalidation): found by replay.property.test.ts
// (seed 1060907630). One origin write covers chunks of two snapshots: the big-chunk snapshot
// A holds the write, the small-chunk snapshot B starts copies without it (its chunk 2 has no
// room, so B goes invalid). When A's exception completes the write runs again, B no longer
// participates, and the write goes to the origin while B's copy read of the same sector is
// still in flight. The journal records both requests but not what the read returned; replay
// applies every request when it is submitted, so B's COW replays with different bytes.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { JournalEntry } from '../../actors/journal/journal.js'
import { replay } from '../../actors/journal/replay.js'
import { firstDifference, pattern } from '../support/bytes.js'
import { delayedDevice } from '../support/delayed-device.js'

const SECTOR = 512

async function record() {
  const initial = pattern(0, 16 * 1024, 3)
  const originImage = MemoryDevice.from(initial)
  // B's copy read of sector 1 is slow; everything else completes at once.
  const origin = await openOrigin(delayedDevice(originImage, (op, offset, length) => (op === 'read' && offset === SECTOR && length === SECTOR ? 40 : 0)),
    { journal: { payloads: true } })
  const cowA = new MemoryDevice(64 * 1024)
  const cowB = new MemoryDevice(2 * SECTOR) // transient, room for 2 one-sector chunks
  await origin.createSnapshot(cowA, { chunkSize: 16 * SECTOR, persistent: false })
  const b = await origin.createSnapshot(cowB, { chunkSize: SECTOR, persistent: false })
  await origin.write(0, pattern(0, 3 * SECTOR, 9)) // chunks 0-2 of B: the third finds no room
  await origin.close()
  return { initial, entries: [...origin.journal.entries()], originImage, cowA, cowB, bState: b.status().state }
}

const find = (entries: readonly JournalEntry[], match: Partial<JournalEntry>) =>
  entries.find((e) => Object.entries(match).every(([k, v]) => e[k] === v))

test('the recorded run has an origin write overlapping an invalid snapshot\'s copy read (what the replay cannot pin down)', async () => {
  const { entries, bState } = await record()
  expect(bState).toBe('invalid')
  const copyRead = find(entries, { type: 'submit', device: 'origin', op: 'read', offset: SECTOR, length: SECTOR })!
  const originWrite = find(entries, { type: 'submit', device: 'origin', op: 'write', offset: SECTOR })!
  const copyReadDone = find(entries, { type: 'complete', req: copyRead.req })!
  expect(copyRead.seq).toBeLessThan(originWrite.seq)
  expect(originWrite.seq).toBeLessThan(copyReadDone.seq) // both in flight at once on the origin device
})

test('replay reproduces the entries, the origin and the valid snapshot\'s COW', async () => {
  const { initial, entries, originImage, cowA, cowB } = await record()
  const o = MemoryDevice.from(initial)
  const a = new MemoryDevice(cowA.size)
  const { entries: made } = await replay(entries, { origin: o, cows: [a, new MemoryDevice(cowB.size)] })
  expect(made).toEqual(entries)
  expect(firstDifference(o.snapshotBytes(), originImage.snapshotBytes())).toBeUndefined()
  expect(firstDifference(a.snapshotBytes(), cowA.snapshotBytes())).toBeUndefined()
})

// Decided (docs/events.md, "What a replay cannot repeat"): an Invalid snapshot never delays an
// origin write again (spec §7), so its copies still in flight may race one; the bytes they
// leave in its COW are never read (every read of an Invalid snapshot fails) and are not part
// of an exact replay. This test pins down that only those bytes differ, and only there.
test('replay differs only in the invalid snapshot\'s COW data chunk that raced the origin write', async () => {
  const { initial, entries, cowA, cowB } = await record()
  const b = new MemoryDevice(cowB.size)
  await replay(entries, { origin: MemoryDevice.from(initial), cows: [new MemoryDevice(cowA.size), b] })
  const differs = firstDifference(b.snapshotBytes(), cowB.snapshotBytes())
  expect(differs).toMatch(/^byte at offset (5\d\d|6\d\d|7\d\d|8\d\d|9\d\d|10[01]\d|102[0-3]):/) // within COW chunk 1 (bytes 512-1023)
})
