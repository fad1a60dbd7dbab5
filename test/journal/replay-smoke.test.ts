import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { replay } from '../../actors/journal/replay.js'

test('a recorded run replays to the same entries and images', async () => {
  const initial = new Uint8Array(64 * 4096).map((_, i) => i & 0xff)
  const originDevice = MemoryDevice.from(initial)
  const cowDevice = new MemoryDevice(1 << 20)
  const origin = await openOrigin(originDevice, { journal: { payloads: true } })
  const snapshot = await origin.createSnapshot(cowDevice, { chunkSize: 4096 })
  await Promise.all([
    origin.write(0, new Uint8Array(8192).fill(1)),
    snapshot.read(0, new Uint8Array(4096)),
    snapshot.write(4096 * 10, new Uint8Array(512).fill(2)),
    origin.write(4096 * 10, new Uint8Array(4096).fill(3)),
  ])
  const recorded = [...origin.journal.entries()]
  const o2 = MemoryDevice.from(initial)
  const c2 = new MemoryDevice(1 << 20)
  const { entries } = await replay(recorded, { origin: o2, cows: [c2] })
  expect(entries).toEqual(recorded)
  expect(Buffer.from(o2.snapshotBytes()).equals(Buffer.from(originDevice.snapshotBytes()))).toBe(true)
  expect(Buffer.from(c2.snapshotBytes()).equals(Buffer.from(cowDevice.snapshotBytes()))).toBe(true)
  console.log(recorded.length, recorded.slice(0, 12).map((e) => JSON.stringify(e)).join('\n'))
})
