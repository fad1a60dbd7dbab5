// Copy throttling (spec §16): with a threshold of N copies in flight per snapshot, a new write
// waits until one finishes; re-run writes and ordering are unaffected.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'

test('a new origin write waits while the snapshot has cowThreshold copies in flight', async () => {
  const cow = new ControlledDevice(new MemoryDevice(1 << 20), 'cow')
  cow.passThrough = () => true
  const origin = await openOrigin(MemoryDevice.from(new Uint8Array(1 << 20).fill(5)), { cowThreshold: 1 })
  const snapshot = await origin.createSnapshot(cow, { chunkSize: 4096 })
  cow.passThrough = (op, offset) => !(op === 'write' && offset >= 2 * 4096) // park copies
  const first = origin.write(10 * 4096, new Uint8Array(4096).fill(1))
  const second = origin.write(20 * 4096, new Uint8Array(4096).fill(2))
  await settle()
  expect(cow.find('write').map((p) => p.offset)).toEqual([2 * 4096]) // only the first copy started
  expect(snapshot.chunkState(20)).toBe('None')
  cow.releaseAll()
  await settle()
  expect(cow.find('write').map((p) => p.offset)).toEqual([3 * 4096]) // now the second
  cow.passThrough = () => true
  cow.releaseAll()
  await Promise.all([first, second])
  const seen = new Uint8Array(4096)
  await snapshot.read(20 * 4096, seen)
  expect(seen[0]).toBe(5)
})

test('the default threshold (2048) lets many copies run at once', async () => {
  const cow = new ControlledDevice(new MemoryDevice(4 << 20), 'cow')
  cow.passThrough = () => true
  const origin = await openOrigin(new MemoryDevice(4 << 20))
  await origin.createSnapshot(cow, { chunkSize: 4096 })
  cow.passThrough = (op, offset) => !(op === 'write' && offset >= 2 * 4096)
  const writes = Array.from({ length: 50 }, (_, i) => origin.write(i * 4096, new Uint8Array(4096)))
  await settle()
  expect(cow.find('write').length).toBe(50)
  cow.passThrough = () => true
  cow.releaseAll()
  await Promise.all(writes)
})
