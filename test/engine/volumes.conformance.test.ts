// The volumes are BlockDevices (api.md "Origin and snapshots"): the shared conformance suite
// runs on an Origin, on an Origin with a snapshot attached (every first write to a chunk then
// copies, spec §5.2), and on a Snapshot (snapshot writes go to its COW, §5.4). Each factory
// gives a zero-filled volume; closing a Snapshot drops it, closing an Origin drops its
// snapshots. The volumes report `supports.persistent` of the device below (memory: false),
// so the suite's reopen tests do not apply.
import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { blockDeviceSuite } from '../conformance/block-device.js'

const CHUNK = 4096

/** Room for every chunk of a `size`-byte origin, plus header and metadata areas (§9.1). */
const cowFor = (size: number) => new MemoryDevice(2 * size + 4 * CHUNK)

describe('Origin', () => {
  blockDeviceSuite({ test, factory: (size) => openOrigin(new MemoryDevice(size)) })
})

describe('Origin with a snapshot attached', () => {
  blockDeviceSuite({
    test,
    factory: async (size): Promise<BlockDevice> => {
      const origin = await openOrigin(new MemoryDevice(size))
      const snapshot = await origin.createSnapshot(cowFor(size), { chunkSize: CHUNK })
      // The origin, except that its first close also checks that the snapshot still reads as
      // the zero-filled origin it was made of, whatever the test wrote to the origin.
      let closing: Promise<void> | undefined
      return {
        size: origin.size,
        supports: origin.supports,
        read: (offset, buffer) => origin.read(offset, buffer),
        write: (offset, data) => origin.write(offset, data),
        flush: () => origin.flush(),
        close: () => (closing ??= (async () => {
          const all = new Uint8Array(size).fill(0xa5)
          await snapshot.read(0, all)
          const at = all.findIndex((b) => b !== 0)
          await origin.close()
          if (at !== -1) throw new Error(`the snapshot's byte ${at} is ${all[at]}: the origin's old data was not preserved`)
        })()),
      }
    },
  })

  test('closing the origin drops its snapshots', async () => {
    const origin = await openOrigin(new MemoryDevice(64 * CHUNK))
    const snapshot = await origin.createSnapshot(cowFor(64 * CHUNK), { chunkSize: CHUNK })
    await origin.close()
    expect(origin.snapshots).toEqual([])
    await expect(snapshot.read(0, new Uint8Array(512))).rejects.toThrow()
  })
})

describe('Snapshot', () => {
  blockDeviceSuite({
    test,
    factory: async (size) => {
      const origin = await openOrigin(new MemoryDevice(size))
      return origin.createSnapshot(cowFor(size), { chunkSize: CHUNK })
    },
  })

  test('closing a snapshot drops it from its origin', async () => {
    const origin = await openOrigin(new MemoryDevice(64 * CHUNK))
    const snapshot = await origin.createSnapshot(cowFor(64 * CHUNK), { chunkSize: CHUNK })
    await snapshot.close()
    expect(origin.snapshots).toEqual([])
    await origin.write(0, new Uint8Array(CHUNK).fill(1)) // no copy for a dropped snapshot
    expect(origin.engine.snapshots).toEqual([])
  })
})
