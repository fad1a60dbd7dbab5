// A device failure in a journaled run (issue 9, bug 3): the `complete` entry of the failed
// request records the error's code (or name), and replay() fails that request again with an
// error carrying it, so every later entry (`done ... error`, an invalidation) comes out the
// same. Before the fix the replay failed the request with a plain Error and diverged.
import { describe, expect, test } from 'vitest'
import { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { JournalEntry } from '../../actors/journal/journal.js'
import { replay } from '../../actors/journal/replay.js'
import { failingDevice, failNth } from '../support/failing-device.js'
import type { FailureDecision } from '../support/failing-device.js'

const ORIGIN = 64 * 1024
const COW = 256 * 1024
const initial = () => new Uint8Array(ORIGIN).map((_, i) => (i * 7 + (i >> 9)) & 0xff)
const none: FailureDecision = () => undefined

/**
 * An origin write that copies chunk 1, a snapshot read, an origin read and write (a copy), a
 * flush, a snapshot read of chunk 1 (from the COW) and a snapshot write. createSnapshot makes
 * one COW read, two COW writes and two flushes first: the failures below come after those.
 */
async function recordRun(failOrigin: FailureDecision, failCow: FailureDecision): Promise<JournalEntry[]> {
  const origin = await openOrigin(failingDevice(MemoryDevice.from(initial()), failOrigin), { journal: { payloads: true } })
  const snap = await origin.createSnapshot(failingDevice(new MemoryDevice(COW), failCow), { chunkSize: 4096 })
  await Promise.allSettled([
    origin.write(4096, new Uint8Array(512).fill(1)),
    snap.read(8192, new Uint8Array(512)),
    origin.read(12288, new Uint8Array(1024)),
    origin.write(16384, new Uint8Array(4096).fill(2)),
  ])
  await origin.flush().catch(() => undefined)
  await snap.read(4096, new Uint8Array(512)).catch(() => undefined) // chunk 1 was copied: a COW read
  await snap.write(20480, new Uint8Array(512).fill(3)).catch(() => undefined)
  return [...origin.journal.entries()]
}

class NamedError extends Error {
  constructor() { super('a device error without a code'); this.name = 'NamedError' }
}
const errno = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO', errno: -5 })

const cases: Array<{ name: string; origin?: FailureDecision; cow?: FailureDecision; error: string; invalidates?: boolean }> = [
  { name: 'an origin write fails with SNAPCOW_IO', origin: failNth('write', 2, new SnapcowError('SNAPCOW_IO', 'write failed')), error: 'SNAPCOW_IO' },
  { name: 'the copy\'s COW write fails (the snapshot goes invalid)', cow: failNth('write', 3, new SnapcowError('SNAPCOW_IO', 'cow write failed')), error: 'SNAPCOW_IO', invalidates: true },
  { name: 'an origin read fails with an error without a code', origin: failNth('read', 2, new NamedError()), error: 'NamedError' },
  { name: 'a COW read fails with a TypeError', cow: failNth('read', 2, new TypeError('bad')), error: 'TypeError' },
  { name: 'a flush fails with an errno error (code EIO)', origin: failNth('flush', 1, errno), error: 'EIO' },
  { name: 'a COW flush fails with a numeric code (its name is recorded; the commit fails)', cow: failNth('flush', 3, Object.assign(new Error('x'), { code: 5 })), error: 'Error', invalidates: true },
]

describe('a recorded device failure replays exactly', () => {
  test.each(cases)('$name', async ({ origin, cow, error, invalidates = false }) => {
    const recorded = await recordRun(origin ?? none, cow ?? none)
    expect(recorded.some((e) => e.type === 'command' && e.command === 'invalidate')).toBe(invalidates)
    const failed = recorded.filter((e) => e.type === 'complete' && e.ok === false)
    expect(failed).toHaveLength(1)
    expect(failed[0]).toEqual({ seq: failed[0]!.seq, type: 'complete', req: failed[0]!.req, ok: false, error })
    // a successful completion is as it always was: no `error` field
    for (const e of recorded.filter((x) => x.type === 'complete' && x.ok === true)) expect(Object.keys(e)).toEqual(['seq', 'type', 'req', 'ok'])
    const { entries } = await replay(recorded, { origin: MemoryDevice.from(initial()), cows: [new MemoryDevice(COW)] })
    expect(entries).toEqual(recorded)
  })

  test('the failure reaches a caller: its `done` carries the recorded code, in the run and in the replay', async () => {
    const recorded = await recordRun(failNth('write', 2, new SnapcowError('SNAPCOW_IO', 'write failed')), none)
    expect(recorded.filter((e) => e.type === 'done' && e.ok === false).map((e) => e.error)).toEqual(['SNAPCOW_IO'])
    const { entries } = await replay(recorded, { origin: MemoryDevice.from(initial()), cows: [new MemoryDevice(COW)] })
    expect(entries.filter((e) => e.type === 'done' && e.ok === false).map((e) => e.error)).toEqual(['SNAPCOW_IO'])
  })

  test('a journal from before the fix (a failed `complete` without `error`) still replays as then', async () => {
    // Such a replay fails the request with a plain Error, so its `done` says "Error".
    const recorded = await recordRun(failNth('write', 2, new SnapcowError('SNAPCOW_IO', 'write failed')), none)
    const old = recorded.map((e) => {
      if (e.type === 'complete' && e.ok === false) { const { error: _, ...rest } = e; return rest as JournalEntry }
      if (e.type === 'done' && e.ok === false) return { ...e, error: 'Error' }
      return e
    })
    const { entries } = await replay(old, { origin: MemoryDevice.from(initial()), cows: [new MemoryDevice(COW)] })
    expect(entries).toEqual(old)
  })
})
