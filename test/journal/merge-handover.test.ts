// Spec §12/§17, the merge handover: found by replay.property.test.ts (a hang). merge() first
// closes admission (no new writes) and waits for the origin writes in flight, then waits for
// the snapshot to be quiet (no exception pending, no snapshot I/O in flight). A write to the
// snapshot issued in between has already counted itself as in flight (ioInFlight) and then
// waits at the closed admission: the handover waits for the write, the write for the
// handover, and both hang. Without a journal it happens as soon as merge() and a snapshot
// write are called back to back; with a journal, when an origin write is still in flight.
//
// KNOWN FAILURES (reported, not fixed here): each test gives the two promises 2 s.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { delayedDevice } from '../support/delayed-device.js'

/** 'settles' (either way: the bug is the hang) or 'hangs' (still pending after `ms`). */
const within = (promise: Promise<unknown>, ms = 2000): Promise<string> => Promise.race([
  promise.then(() => 'settles', () => 'settles'),
  new Promise<string>((resolve) => setTimeout(() => resolve('hangs'), ms)),
])

test('a snapshot write right after merge() settles, and so does the merge (no journal)', async () => {
  const origin = await openOrigin(new MemoryDevice(64 * 1024))
  const snap = await origin.createSnapshot(new MemoryDevice(256 * 1024), { chunkSize: 1024 })
  await origin.write(0, new Uint8Array(512).fill(1))
  const merge = snap.merge()
  const write = snap.write(512, new Uint8Array(512).fill(2))
  expect(await Promise.all([within(merge), within(write)])).toEqual(['settles', 'settles'])
})

test('a snapshot write issued while the handover waits for an origin write settles, and so does the merge (journal on)', async () => {
  // The replay property's shrunk counterexample: the origin write's device requests take a
  // few turns, so the merge's handover is still waiting for it when the snapshot write comes.
  const slow = () => 3
  const origin = await openOrigin(delayedDevice(new MemoryDevice(64 * 1024), slow), { journal: {} })
  const snap = await origin.createSnapshot(delayedDevice(new MemoryDevice(256 * 1024), slow), { chunkSize: 1024 })
  const write0 = origin.write(0, new Uint8Array(512).fill(1))
  const merge = snap.merge()
  const write = snap.write(512, new Uint8Array(512).fill(2))
  expect(await Promise.all([within(write0), within(merge), within(write)])).toEqual(['settles', 'settles', 'settles'])
})
