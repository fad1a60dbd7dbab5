// The transient store (spec §10): data chunks from COW chunk 0, whole chunks only, commits
// complete at once with the copy's outcome, usage counts sectors handed out.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { TransientStore } from '../../io/cow-format/transient-store.js'
import { asChunkSectors, asOldChunk } from '../../io/units.js'
import { RecordingDevice } from '../support/recording-device.js'

test('allocates from chunk 0 while a whole chunk fits, writing nothing', async () => {
  const cow = new RecordingDevice(new MemoryDevice(3 * 4096 + 2048))
  const store = new TransientStore(cow, asChunkSectors(8))
  expect([store.allocate(), store.allocate(), store.allocate(), store.allocate()]).toEqual([0, 1, 2, undefined])
  expect(store.usage()).toEqual({ allocatedSectors: 24, totalSectors: 28, metadataSectors: 0 })
  expect(await store.commit(asOldChunk(9), 0 as never, true)).toBe(true)
  await store.invalidate()
  expect(store.valid).toBe(false)
  expect(cow.ops).toEqual([])
})

test('a failed copy makes the commit false and the store invalid', async () => {
  const store = new TransientStore(new MemoryDevice(1 << 20), asChunkSectors(8))
  const chunk = store.allocate()!
  expect(await store.commit(asOldChunk(1), chunk, false)).toBe(false)
  expect(store.valid).toBe(false)
})

test.each([0, 6, 1 << 22])('chunk size %s is refused with a RangeError naming it', (cs) => {
  expect(() => new TransientStore(new MemoryDevice(1 << 20), asChunkSectors(cs))).toThrow(new RegExp(`chunk size ${cs}`))
})
