// io/memory-device.ts: a zero-filled block device held in one Uint8Array (api.md "Devices").
// Writes copy the caller's bytes, so later changes to their buffer never reach the device.

import { constants } from 'node:buffer'
import type { ByteOffset } from './units.js'
import { checkDeviceSize, DeviceBase, type DeviceBaseOptions } from './device-base.js'

/** The largest Uint8Array this Node.js allows (4 GiB on 64-bit Node 20), rounded down to sectors. */
const MAX_BYTES = constants.MAX_LENGTH - (constants.MAX_LENGTH % 512)

/**
 * A block device in memory: fast, zero-filled, gone when dropped.
 * `flush()` is an honest no-op; nothing survives the process.
 * @example
 * const dev = new MemoryDevice(1 << 20)
 * await dev.write(4096, new Uint8Array(512).fill(7))
 * const back = new Uint8Array(512)
 * await dev.read(4096, back) // back is all 7s
 */
export class MemoryDevice extends DeviceBase {
  readonly #bytes: Uint8Array

  constructor(size: number, options?: DeviceBaseOptions) {
    checkDeviceSize(size, 'MemoryDevice size')
    if (size > MAX_BYTES) {
      throw new RangeError(`MemoryDevice size ${size} bytes is more than a MemoryDevice can hold (at most ${MAX_BYTES} bytes, the largest Uint8Array Node.js allows): use a FileDevice`)
    }
    super(size, { flush: true, persistent: false }, options)
    try {
      this.#bytes = new Uint8Array(size)
    } catch (cause) {
      throw new RangeError(`MemoryDevice size ${size} bytes is more than memory allows (${(cause as Error).message}): use a smaller size or a FileDevice`, { cause })
    }
  }

  /**
   * A device holding a copy of `bytes` (whose length must be a multiple of 512).
   * @example
   * const dev = MemoryDevice.from(new Uint8Array(8192).fill(1))
   */
  static from(bytes: Uint8Array, options?: DeviceBaseOptions): MemoryDevice {
    const device = new MemoryDevice(bytes.length, options)
    device.#bytes.set(bytes)
    return device
  }

  /**
   * A copy of every byte on the device, for tests and examples. Works after `close()` too,
   * so a closed device can be "reopened" with `MemoryDevice.from(dev.snapshotBytes())`.
   * @example
   * const image = dev.snapshotBytes()
   */
  snapshotBytes(): Uint8Array {
    return this.#bytes.slice()
  }

  protected override async _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    into.set(this.#bytes.subarray(offset, offset + into.length))
  }

  protected override async _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    this.#bytes.set(data, offset) // copies: the caller may reuse `data` at once
  }

  protected override async _flush(): Promise<void> {}

  protected override async _close(): Promise<void> {}
}
