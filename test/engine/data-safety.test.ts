// Regression tests for the data-safety bugs of issue 9: each one failed on the engine before
// its fix (reverted once and seen failing). One describe per bug; the spec rows they protect
// are named in each.
import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { SnapcowError } from '../../io/errors.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'
import { CrashDevice } from '../../testing/crash-device.js'
import { RecordingDevice } from '../support/recording-device.js'
import { firstDifference, pattern, readAt } from '../support/bytes.js'

const CHUNK = 4096
const ORIGIN_BYTES = 64 * CHUNK

/** A persistent COW with room for `dataChunks` data chunks (header and area 0 first). */
const smallCow = (dataChunks: number) => new MemoryDevice((2 + dataChunks) * CHUNK)

/** A device that lets everything through but records what was submitted, in order. */
function watched(inner: BlockDevice, name: string): ControlledDevice {
  const device = new ControlledDevice(inner, name)
  device.passThrough = () => true
  return device
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => undefined, (e: unknown) => e)
}

describe('bug 1: every origin write waits for an invalidation in flight (spec §13)', () => {
  /**
   * S1 has room for one exception and is filled; S2 (transient, roomy) stays valid. The write
   * that finds S1 full starts S1's `valid = 0` header write, which the test holds back.
   */
  async function invalidationInFlight(withS2: boolean) {
    const originDevice = watched(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), 'origin')
    const origin = await openOrigin(originDevice)
    const cow1 = watched(smallCow(1), 'cow1')
    const s1 = await origin.createSnapshot(cow1, { chunkSize: CHUNK })
    if (withS2) await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: CHUNK, persistent: false })
    await origin.write(5 * CHUNK, pattern(5 * CHUNK, CHUNK, 2)) // S1's only data chunk (and S2's first)
    cow1.passThrough = (op, offset) => !(op === 'write' && offset === 0) // hold the header write
    const filling = origin.write(3 * CHUNK, pattern(3 * CHUNK, CHUNK, 3))
    await settle()
    expect(s1.status().state).toBe('invalid')
    expect(cow1.find('write', 0)).toHaveLength(1)
    const mark = originDevice.submitted.length
    const originWritesSince = () => originDevice.submitted.slice(mark).filter((r) => r.startsWith('write@'))
    return { origin, originWritesSince, cow1, s1, filling }
  }

  test('the fast path (every valid snapshot has the chunk in Completed) waits for the header', async () => {
    const { origin, originWritesSince, cow1, filling } = await invalidationInFlight(true)
    const rewrite = origin.write(5 * CHUNK, pattern(5 * CHUNK, CHUNK, 4)) // S2: Completed; S1: invalid
    await settle()
    expect(originWritesSince()).toEqual([])
    cow1.releaseAll()
    await Promise.all([filling, rewrite])
    expect(originWritesSince()).toContain(`write@${5 * CHUNK}+${CHUNK}`)
    expect((await readCowStore(cow1.inner)).valid).toBe(false)
  })

  test('the path with no participating snapshot waits for the header', async () => {
    const { origin, originWritesSince, cow1, filling } = await invalidationInFlight(false) // S1 invalid: none takes part
    const write = origin.write(9 * CHUNK, pattern(9 * CHUNK, CHUNK, 5))
    await settle()
    expect(originWritesSince()).toEqual([])
    cow1.releaseAll()
    await Promise.all([filling, write])
    expect(originWritesSince()).toEqual([`write@${3 * CHUNK}+${CHUNK}`, `write@${9 * CHUNK}+${CHUNK}`])
  })

  test('a later piece of the write that invalidated the snapshot waits too', async () => {
    const originDevice = watched(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), 'origin')
    const origin = await openOrigin(originDevice)
    const cow1 = watched(smallCow(1), 'cow1')
    const s1 = await origin.createSnapshot(cow1, { chunkSize: CHUNK })
    await origin.write(5 * CHUNK, pattern(5 * CHUNK, CHUNK, 2))
    cow1.passThrough = (op, offset) => !(op === 'write' && offset === 0)
    const mark = originDevice.submitted.length
    // Chunk 4 finds S1 full; chunk 5 (already Completed) is the next piece of the same write.
    const write = origin.write(4 * CHUNK, pattern(4 * CHUNK, 2 * CHUNK, 3))
    await settle()
    expect(s1.status().state).toBe('invalid')
    expect(originDevice.submitted.slice(mark).filter((r) => r.startsWith('write@'))).toEqual([])
    cow1.releaseAll()
    await write
    expect(firstDifference(await readAt(origin, 4 * CHUNK, 2 * CHUNK), pattern(4 * CHUNK, 2 * CHUNK, 3))).toBeUndefined()
  })

  test('a merge batch waits for another snapshot\'s invalidation too', async () => {
    const originDevice = watched(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), 'origin')
    const origin = await openOrigin(originDevice)
    const merging = await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: CHUNK })
    await merging.write(7 * CHUNK, pattern(7 * CHUNK, CHUNK, 9))
    const cow1 = watched(smallCow(1), 'cow1')
    const full = await origin.createSnapshot(cow1, { chunkSize: CHUNK })
    await origin.write(2 * CHUNK, pattern(2 * CHUNK, CHUNK, 3)) // its only data chunk
    const mark = originDevice.submitted.length
    cow1.passThrough = (op, offset) => !(op === 'write' && offset === 0)
    const merged = merging.merge() // step 3 asks `full` to copy chunk 7: no room, invalid
    await settle()
    expect(full.status().state).toBe('invalid')
    expect(originDevice.submitted.slice(mark)).not.toContain(`write@${7 * CHUNK}+${CHUNK}`)
    cow1.releaseAll()
    await merged
    expect(originDevice.submitted.slice(mark)).toContain(`write@${7 * CHUNK}+${CHUNK}`)
  })
})

describe('bug 2: origin.flush() during a merge makes the writes it sent to the COW durable (spec §5.5)', () => {
  test('a write to a chunk that still has an exception survives a power cut after origin.flush()', async () => {
    const origin = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const cow = new CrashDevice(new Uint8Array(ORIGIN_BYTES))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    for (const c of [2, 4, 6]) await snapshot.write(c * CHUNK, pattern(c * CHUNK, CHUNK, 2))
    const stop = new AbortController()
    stop.abort(new Error('stopped at once'))
    await expect(snapshot.merge({ signal: stop.signal })).rejects.toThrow('stopped at once')
    expect(snapshot.status().state).toBe('merging') // the origin reads through the COW
    await origin.write(4 * CHUNK, pattern(4 * CHUNK, CHUNK, 3)) // chunk 4 has an exception: to the COW
    await origin.flush()
    expect(cow.unflushedWrites).toBe(0)
    const after = cow.crash('lose-unflushed')
    const table = (await readCowStore(after)).exceptions
    const newChunk = table.find(([old]) => old === 4)![1]
    expect(firstDifference(await readAt(after, newChunk * CHUNK, CHUNK), pattern(4 * CHUNK, CHUNK, 3))).toBeUndefined()
  })

  test('a flush of the merging snapshot volume reaches both devices', async () => {
    const originDevice = new RecordingDevice(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const origin = await openOrigin(originDevice)
    const cow = new RecordingDevice(new MemoryDevice(ORIGIN_BYTES))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    await snapshot.write(2 * CHUNK, pattern(2 * CHUNK, CHUNK, 2))
    const stop = new AbortController()
    stop.abort(new Error('stop'))
    await expect(snapshot.merge({ signal: stop.signal })).rejects.toThrow('stop')
    const [o, c] = [originDevice.ops.length, cow.ops.length]
    await snapshot.flush()
    expect(originDevice.ops.slice(o)).toContainEqual({ op: 'flush' })
    expect(cow.ops.slice(c)).toContainEqual({ op: 'flush' })
  })
})

describe('bug 4: a snapshot read in flight when its snapshot is invalidated never returns newer data', () => {
  test('it rejects with SNAPCOW_INVALID instead of returning what an origin write put there since', async () => {
    const originDevice = watched(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), 'origin')
    const origin = await openOrigin(originDevice)
    const snapshot = await origin.createSnapshot(smallCow(1), { chunkSize: CHUNK })
    originDevice.passThrough = (op, offset) => !(op === 'read' && offset === 7 * CHUNK)
    const read = snapshot.read(7 * CHUNK, new Uint8Array(CHUNK)) // tracked, held at the device
    await settle()
    await origin.write(2 * CHUNK, pattern(2 * CHUNK, CHUNK, 2)) // the COW's only data chunk
    await origin.write(4 * CHUNK, pattern(4 * CHUNK, CHUNK, 3)) // no room: Invalid
    expect(snapshot.status().state).toBe('invalid')
    await origin.write(7 * CHUNK, pattern(7 * CHUNK, CHUNK, 4)) // no longer waits for the read
    originDevice.releaseAll() // the read now sees the new data
    const error = await rejection(read)
    expect(error).toBeInstanceOf(SnapcowError)
    expect(error).toMatchObject({ code: 'SNAPCOW_INVALID' })
  })
})

describe('bug 5: copies in flight never exceed cowThreshold (spec §16)', () => {
  async function thresholdRig(threshold: number) {
    const cow = watched(new MemoryDevice(512 * CHUNK), 'cow')
    const origin = await openOrigin(MemoryDevice.from(pattern(0, 256 * CHUNK, 1)), { cowThreshold: threshold })
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.passThrough = (op, offset) => !(op === 'write' && offset >= 2 * CHUNK) // hold every copy
    const core = origin.engine.snapshots[0]!
    return { cow, origin, snapshot, core }
  }

  /** Releases held copies one at a time, checking the bound after each step; returns the peak. */
  async function drain(cow: ControlledDevice, inFlight: () => number, threshold: number, done: Promise<unknown>): Promise<number> {
    let finished = false
    void done.finally(() => { finished = true })
    let peak = 0
    for (let step = 0; !finished && step < 10_000; step++) {
      await settle()
      const copies = cow.find('write').filter((p) => p.length === CHUNK).length // held 512-byte writes are not copies
      peak = Math.max(peak, inFlight(), copies)
      expect(copies).toBeLessThanOrEqual(threshold)
      expect(inFlight()).toBeLessThanOrEqual(threshold)
      if (cow.find('write').length > 0) cow.releaseOne('write')
    }
    await done
    return peak
  }

  test('200 first writes against a threshold of 4: never more than 4 copies at once, all land', async () => {
    const { cow, origin, snapshot, core } = await thresholdRig(4)
    const writes = Array.from({ length: 200 }, (_, i) => origin.write(i * CHUNK, pattern(i * CHUNK, CHUNK, 7)))
    const peak = await drain(cow, () => core.copiesInFlight, 4, Promise.all(writes))
    expect(peak).toBe(4)
    for (const chunk of [0, 99, 199]) {
      expect(firstDifference(await readAt(snapshot, chunk * CHUNK, CHUNK), pattern(chunk * CHUNK, CHUNK, 1))).toBeUndefined()
      expect(firstDifference(await readAt(origin, chunk * CHUNK, CHUNK), pattern(chunk * CHUNK, CHUNK, 7))).toBeUndefined()
    }
  })

  test('partial snapshot writes are bounded the same way', async () => {
    const { cow, snapshot, core } = await thresholdRig(3)
    const writes = Array.from({ length: 60 }, (_, i) => snapshot.write(i * CHUNK + 512, pattern(i * CHUNK + 512, 512, 8)))
    expect(await drain(cow, () => core.copiesInFlight, 3, Promise.all(writes))).toBe(3)
    expect(firstDifference(await readAt(snapshot, 30 * CHUNK, CHUNK),
      new Uint8Array([...pattern(30 * CHUNK, 512, 1), ...pattern(30 * CHUNK + 512, 512, 8), ...pattern(30 * CHUNK + 1024, 3072, 1)]))).toBeUndefined()
  })

  test('one multi-chunk write counts each chunk it copies', async () => {
    const { cow, origin, core } = await thresholdRig(2)
    const write = origin.write(0, pattern(0, 32 * CHUNK, 9))
    expect(await drain(cow, () => core.copiesInFlight, 2, write)).toBe(2)
  })
})

describe('bug 6: drop() of a snapshot whose merge stopped keeps what the origin shows', () => {
  test('it is refused (SNAPCOW_MERGING, saying to resume), and the origin keeps its content', async () => {
    const originDevice = MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1))
    const origin = await openOrigin(originDevice)
    const snapshot = await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: CHUNK })
    for (const c of [1, 3, 5, 7]) await snapshot.write(c * CHUNK, pattern(c * CHUNK, CHUNK, 2))
    const stop = new AbortController()
    stop.abort(new Error('stop'))
    await expect(snapshot.merge({ signal: stop.signal })).rejects.toThrow('stop')
    await origin.write(3 * CHUNK, pattern(3 * CHUNK, CHUNK, 4)) // acknowledged during the merge
    const shown = await readAt(origin, 0, ORIGIN_BYTES)
    const error = await rejection(snapshot.drop())
    expect(error).toMatchObject({ code: 'SNAPCOW_MERGING' })
    expect((error as Error).message).toMatch(/merge\(\) again/)
    expect(firstDifference(await readAt(origin, 0, ORIGIN_BYTES), shown)).toBeUndefined()
    await snapshot.merge() // resuming still works, and ends with the same content
    expect(firstDifference(await readAt(originDevice, 0, ORIGIN_BYTES), shown)).toBeUndefined()
  })

  test('closing the origin is still allowed: the store keeps the merge to resume later', async () => {
    const origin = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const cow = new MemoryDevice(ORIGIN_BYTES)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    await snapshot.write(CHUNK, pattern(CHUNK, CHUNK, 2))
    const stop = new AbortController()
    stop.abort(new Error('stop'))
    await expect(snapshot.merge({ signal: stop.signal })).rejects.toThrow('stop')
    await origin.close()
    expect((await readCowStore(cow)).exceptions).toHaveLength(1)
  })
})

describe('bug 7: createSnapshot while another snapshot merges', () => {
  test('is refused with SNAPCOW_MERGING, and nothing is written to the new COW', async () => {
    const origin = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const snapshot = await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: CHUNK })
    await snapshot.write(CHUNK, pattern(CHUNK, CHUNK, 2))
    const stop = new AbortController()
    stop.abort(new Error('stop'))
    await expect(snapshot.merge({ signal: stop.signal })).rejects.toThrow('stop')
    const cow = new RecordingDevice(new MemoryDevice(ORIGIN_BYTES))
    await expect(origin.createSnapshot(cow, { chunkSize: CHUNK })).rejects.toMatchObject({ code: 'SNAPCOW_MERGING' })
    expect(cow.writes()).toEqual([])
    await snapshot.merge()
    expect((await origin.createSnapshot(cow, { chunkSize: CHUNK })).status().state).toBe('active') // after the merge: fine
  })

  test('a merge that starts while the new store is being written refuses the activation', async () => {
    const origin = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const merging = await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: CHUNK })
    await merging.write(CHUNK, pattern(CHUNK, CHUNK, 2))
    const cow = new ControlledDevice(new MemoryDevice(ORIGIN_BYTES), 'cow')
    const created = origin.createSnapshot(cow, { chunkSize: CHUNK })
    await settle() // its store write is held
    const merged = merging.merge()
    cow.passThrough = () => true
    cow.releaseAll()
    await expect(created).rejects.toMatchObject({ code: 'SNAPCOW_MERGING' })
    await merged
    expect(origin.snapshots).toEqual([])
    // The store written before the refusal is erased: the COW holds no store, as before.
    await expect(origin.loadSnapshot(cow)).rejects.toMatchObject({ code: 'SNAPCOW_NO_STORE' })
    expect((await origin.createSnapshot(cow, { chunkSize: CHUNK })).status().state).toBe('active')
  })
})

describe('bug 8: one failed origin read invalidates no more than separate reads would', () => {
  test('a transient error on the shared read: each snapshot reads again on its own and stays valid', async () => {
    const originDevice = new RecordingDevice(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const origin = await openOrigin(originDevice)
    const snapshots = [
      await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: 16384 }),
      await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: 8192 }),
      await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: 4096, persistent: false }),
    ]
    let failures = 1
    originDevice.failRead = () => failures-- > 0 // the first read (the shared one) fails once
    await origin.write(5 * CHUNK, pattern(5 * CHUNK, 512, 2))
    for (const s of snapshots) {
      expect(s.status().state).toBe('active')
      expect(firstDifference(await readAt(s, 4 * CHUNK, 4 * CHUNK), pattern(4 * CHUNK, 4 * CHUNK, 1))).toBeUndefined()
    }
  })

  test('a read that fails for one snapshot\'s range only invalidates that snapshot', async () => {
    const originDevice = new RecordingDevice(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const origin = await openOrigin(originDevice)
    const big = await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: 16384 })
    const small = await origin.createSnapshot(new MemoryDevice(ORIGIN_BYTES), { chunkSize: 4096 })
    originDevice.failRead = (_offset, length) => length === 16384 // the big chunk's range is unreadable
    await origin.write(5 * CHUNK, pattern(5 * CHUNK, 512, 2))
    expect(big.status().state).toBe('invalid')
    expect(small.status().state).toBe('active')
  })
})

describe('an invalidation whose header write fails is surfaced, and origin writes wait for it', () => {
  async function fullSnapshot(headerFailures: number) {
    const originDevice = watched(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), 'origin')
    const origin = await openOrigin(originDevice, { journal: {} })
    const cow = new RecordingDevice(smallCow(1))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    await origin.write(2 * CHUNK, pattern(2 * CHUNK, CHUNK, 2))
    const mark = cow.ops.length
    let left = headerFailures
    cow.failWrite = (offset) => offset === 0 && left-- > 0
    await origin.write(4 * CHUNK, pattern(4 * CHUNK, CHUNK, 3)) // no room: Invalid
    return { origin, originDevice, cow, snapshot, since: () => cow.ops.slice(mark) }
  }

  test('a header write that fails twice is tried again; the origin write goes on only once it is durable', async () => {
    const { originDevice, cow, snapshot, since } = await fullSnapshot(2)
    expect((await readCowStore(cow.inner)).valid).toBe(false)
    expect(since().filter((o) => o.op === 'write' && o.offset === 0)).toHaveLength(3)
    expect(since().at(-1)).toEqual({ op: 'flush' }) // the third attempt, flushed
    expect(snapshot.status().warning).toBeUndefined()
    expect(originDevice.submitted).toContain(`write@${4 * CHUNK}+${CHUNK}`)
  })

  test('when every attempt fails: status().warning and an invalidation-failed entry say so, and the origin goes on', async () => {
    const { origin, snapshot, cow } = await fullSnapshot(Number.POSITIVE_INFINITY)
    expect(snapshot.status().state).toBe('invalid')
    expect(snapshot.status().warning).toMatch(/do not load it again/)
    expect(origin.journal.entries()).toContainEqual(expect.objectContaining({ type: 'invalidation-failed', snapshot: snapshot.id, attempts: 3 }))
    expect((await readCowStore(cow.inner)).valid).toBe(true) // what the warning is about
    await origin.write(9 * CHUNK, pattern(9 * CHUNK, CHUNK, 4)) // the origin is not held for good
    expect(firstDifference(await readAt(origin, 9 * CHUNK, CHUNK), pattern(9 * CHUNK, CHUNK, 4))).toBeUndefined()
  })
})

describe('a bug in the store is reported as one, not disguised as an Invalid snapshot', () => {
  test('a commit out of allocation order (test fault) stops the snapshot with SNAPCOW_INTERNAL; the origin write lands', async () => {
    const cow = watched(new MemoryDevice(ORIGIN_BYTES), 'cow')
    const origin = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), { faults: { commitOutOfOrder: true } })
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.passThrough = (op, offset) => !(op === 'write' && offset >= 2 * CHUNK)
    const first = origin.write(10 * CHUNK, pattern(10 * CHUNK, CHUNK, 2))
    const second = origin.write(11 * CHUNK, pattern(11 * CHUNK, CHUNK, 3))
    await settle()
    cow.passThrough = () => true
    cow.releaseOne('write', 3 * CHUNK) // the second allocation's copy first: its commit is out of order
    cow.releaseAll()
    await Promise.all([first, second])
    const error = await rejection(snapshot.read(0, new Uint8Array(512)))
    expect(error).toMatchObject({ code: 'SNAPCOW_INTERNAL' })
    expect((error as Error).message).toMatch(/allocation order/)
    expect(snapshot.status().warning).toMatch(/internal error/)
    expect(firstDifference(await readAt(origin, 10 * CHUNK, 2 * CHUNK),
      new Uint8Array([...pattern(10 * CHUNK, CHUNK, 2), ...pattern(11 * CHUNK, CHUNK, 3)]))).toBeUndefined()
  })
})
