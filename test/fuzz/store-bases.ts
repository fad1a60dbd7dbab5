// test/fuzz/store-bases.ts: the sound stores the fuzzer starts from: every kernel-made COW of
// ../shared/vectors/kernel (the merged one too), and stores snapcow makes here (fresh, one record,
// an exactly full area, many areas, other chunk sizes, an invalidated one), each with its origin.
import { openOrigin } from '../../actors/origin-volume.js'
import type { BlockDevice } from '../../io/block-device.js'
import { DeviceBase } from '../../io/device-base.js'
import type { ByteOffset } from '../../io/units.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { kernelVectors } from '../support/kernel-vectors.js'
import { SparseDevice } from '../support/sparse-device.js'

export interface BaseStore {
  name: string
  cow: Uint8Array
  chunkSectors: number
  /** The origin the store belongs to (never written by the fuzzer). */
  origin: BlockDevice
}

/** A device over a byte array, without copying it (DeviceBase still refuses reads past its end). */
export class BytesDevice extends DeviceBase {
  constructor(readonly bytes: Uint8Array) {
    super(bytes.length, { flush: true, persistent: false })
  }

  protected override async _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    into.set(this.bytes.subarray(offset, offset + into.length))
  }

  protected override _write(): Promise<void> { return Promise.reject(new Error('the fuzzer\'s devices take no writes')) }
  protected override async _flush(): Promise<void> {}
  protected override async _close(): Promise<void> {}
}

/** A read-only window onto the first `size` bytes of a device: an origin smaller than the store's. */
export function prefixDevice(inner: BlockDevice, size: number): BlockDevice {
  return {
    size,
    read: (offset, buffer) => inner.read(offset, buffer),
    write: () => Promise.reject(new Error('the fuzzer never writes an origin')),
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  }
}

function kernelBases(): BaseStore[] {
  return kernelVectors().flatMap((v) => {
    // Zeros are enough for an origin: the kernel's COW chunks hold non-zero data, so a read sent
    // to the wrong place shows.
    const origin = new SparseDevice(v.manifest.origin.bytes)
    const merged = v.cowMerged()
    return [
      { name: `kernel ${v.name}`, cow: new Uint8Array(v.cow()), chunkSectors: v.manifest.chunk_sectors, origin },
      ...(merged === undefined ? [] : [{ name: `kernel ${v.name} (after merge)`, cow: new Uint8Array(merged), chunkSectors: v.manifest.chunk_sectors, origin }]),
    ]
  })
}

/** A store snapcow writes: `writes` origin chunks changed (each copied once), in a scattered order. */
async function snapcowBase(chunkSectors: number, originChunks: number, cowChunks: number, writes: number): Promise<BaseStore> {
  const chunkBytes = chunkSectors * 512
  const pattern = new Uint8Array(originChunks * chunkBytes)
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31 + (i >>> 9) * 7 + 1) & 0xff
  const originDevice = MemoryDevice.from(pattern)
  const cow = new MemoryDevice(cowChunks * chunkBytes)
  const origin = await openOrigin(originDevice)
  await origin.createSnapshot(cow, { chunkSize: chunkBytes })
  for (let i = 0; i < writes; i++) {
    const chunk = (i * 7919) % originChunks // 7919 is prime: distinct chunks while writes ≤ originChunks
    await origin.write(chunk * chunkBytes, new Uint8Array(512).fill(0xee)).catch(() => undefined) // a full COW invalidates, the write goes on
  }
  await origin.close()
  const name = `snapcow cs${chunkSectors} ${writes} writes, ${cowChunks}-chunk COW`
  return { name, cow: cow.snapshotBytes(), chunkSectors, origin: originDevice }
}

export async function baseStores(): Promise<BaseStore[]> {
  return [
    ...kernelBases(),
    await snapcowBase(1, 64, 48, 0), // fresh
    await snapcowBase(1, 64, 48, 1),
    await snapcowBase(1, 64, 48, 32), // area 0 exactly full: area 1 holds the terminator
    await snapcowBase(1, 160, 200, 130), // five areas
    await snapcowBase(2, 128, 120, 70), // area 0 full and one more
    await snapcowBase(8, 64, 40, 20),
    await snapcowBase(16, 32, 12, 5),
    await snapcowBase(1, 64, 12, 20), // COW fills: the store is invalidated
  ]
}
