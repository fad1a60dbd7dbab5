// drop() (and close()) let the COW device go only once the store has nothing left to write.
// Found by the replay property (seed 1140694665): a snapshot write whose commit failed made the
// snapshot Invalid and failed at once, the user dropped the snapshot, and drop() resolved while
// the `valid = 0` header and its flush were still in flight. A power cut then, or the user
// closing the device, left a header that says valid over a table the origin has moved past.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { CrashClock, CrashDevice } from '../../testing/crash-device.js'
import { FaultDevice } from '../../testing/fault-device.js'
import { RecordingDevice } from '../support/recording-device.js'

const CHUNK = 4096
const TURNS = 8 // event-loop turns each COW request takes: the header write is still in flight when the bio fails

async function invalidateThenDrop(how: 'drop' | 'close') {
  const origin = await openOrigin(MemoryDevice.from(new Uint8Array(16 * CHUNK).fill(7)))
  const disk = new CrashDevice(new Uint8Array(16 * CHUNK), new CrashClock(), 'cow', { delay: () => TURNS })
  const faulty = new FaultDevice(disk)
  const cow = new RecordingDevice(faulty) // records every request the engine makes
  const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
  await disk.flush()
  faulty.arm({ op: 'flush', nth: 1 }) // the group commit's pre-flush fails: the store goes invalid
  // A whole-chunk snapshot write needs no copy: it fails (Invalid) as soon as its commit does.
  await expect(snapshot.write(0, new Uint8Array(CHUNK).fill(9))).rejects.toMatchObject({ code: 'SNAPCOW_INVALID' })
  if (how === 'drop') await snapshot.drop()
  else await origin.close()
  const seen = cow.ops.length
  for (let i = 0; i < 4 * TURNS; i++) await new Promise<void>((resolve) => setImmediate(resolve))
  return { late: cow.ops.slice(seen), restart: disk.cut('lose-unflushed') }
}

for (const how of ['drop', 'close'] as const) {
  test(`after ${how}() the COW gets no request, and a power cut then finds the store marked invalid`, async () => {
    const { late, restart } = await invalidateThenDrop(how)
    expect(late).toEqual([])
    const again = await openOrigin(MemoryDevice.from(new Uint8Array(16 * CHUNK).fill(7)))
    const loaded = await again.loadSnapshot(restart)
    expect(loaded.status().state).toBe('invalid')
    await again.close()
  })
}
