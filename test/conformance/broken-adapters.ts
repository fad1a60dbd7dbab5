// test/conformance/broken-adapters.ts: deliberately broken BlockDevices, one bug each, that the
// conformance suite must catch (suite-catches-broken.test.ts). Most subclass MemoryDevice and
// break a single hook, so every other behaviour stays correct and only the bug can fail a test.

import type { BlockDevice, DeviceSupports } from '../../io/block-device.js'
import { DeviceBase } from '../../io/device-base.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { asByteOffset, type ByteOffset } from '../../io/units.js'

/** Reads or writes (or both) always happen at offset 0, whatever the caller asked. */
export class IgnoresOffset extends MemoryDevice {
  constructor(
    size: number,
    readonly which: 'read' | 'write' | 'both',
  ) {
    super(size)
  }
  protected override _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    return super._read(this.which === 'write' ? offset : asByteOffset(0), into)
  }
  protected override _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    return super._write(this.which === 'read' ? offset : asByteOffset(0), data)
  }
}

/** Fills only the first `limit` bytes of each read buffer (one short pread, never retried). */
export class ReadsShort extends MemoryDevice {
  constructor(
    size: number,
    readonly limit: number,
  ) {
    super(size)
  }
  protected override _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    return super._read(offset, into.subarray(0, Math.min(this.limit, into.length)))
  }
}

/** Writes `data.buffer` from its start, ignoring the view's byteOffset. */
export class IgnoresByteOffset extends MemoryDevice {
  protected override _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    return super._write(offset, new Uint8Array(data.buffer, 0, data.length))
  }
}

/** Keeps a reference to the caller's buffer instead of copying it. */
export class KeepsCallerBuffer extends DeviceBase {
  readonly #sectors = new Map<number, Uint8Array>() // sector offset -> the caller's own bytes
  constructor(size: number) {
    super(size, { flush: true, persistent: false })
  }
  protected async _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    for (let i = 0; i < into.length; i += 512) into.set(this.#sectors.get(offset + i) ?? new Uint8Array(512), i)
  }
  protected async _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    for (let i = 0; i < data.length; i += 512) this.#sectors.set(offset + i, data.subarray(i, i + 512))
  }
  protected async _flush(): Promise<void> {}
  protected async _close(): Promise<void> {}
}

/** No alignment checks at all: rounds the offset down to a sector and moves any length. */
export class AcceptsMisaligned implements BlockDevice {
  readonly supports: DeviceSupports = { flush: true, persistent: false }
  readonly #bytes: Uint8Array
  #closed = false
  constructor(readonly size: number) {
    this.#bytes = new Uint8Array(size)
  }
  async read(offset: number, buffer: Uint8Array): Promise<void> {
    buffer.set(this.#bytes.subarray(...this.#span(offset, buffer.length)))
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#bytes.set(data, this.#span(offset, data.length)[0])
  }
  async flush(): Promise<void> {
    if (this.#closed) throw new Error('closed')
  }
  async close(): Promise<void> {
    this.#closed = true
  }
  #span(offset: number, length: number): [number, number] {
    if (this.#closed) throw new Error('closed')
    const start = Math.floor(offset / 512) * 512
    if (start + length > this.size) throw new RangeError(`offset ${offset} is past the end`)
    return [start, start + length]
  }
}

/** Checks alignment but clips out-of-range requests to the device instead of rejecting them. */
export class AcceptsOutOfRange implements BlockDevice {
  readonly #inner: MemoryDevice
  constructor(readonly size: number) {
    this.#inner = new MemoryDevice(size)
  }
  get supports(): DeviceSupports {
    return this.#inner.supports
  }
  async read(offset: number, buffer: Uint8Array): Promise<void> {
    const inRange = this.#inRange(offset, buffer.length)
    if (inRange > 0 || buffer.length === 0) await this.#inner.read(offset, buffer.subarray(0, inRange))
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    const inRange = this.#inRange(offset, data.length)
    if (inRange > 0 || data.length === 0) await this.#inner.write(offset, data.subarray(0, inRange))
  }
  flush(): Promise<void> {
    return this.#inner.flush()
  }
  close(): Promise<void> {
    return this.#inner.close()
  }
  /** How much of the request lies inside the device (nothing, for one starting past the end). */
  #inRange(offset: number, length: number): number {
    if (!Number.isFinite(offset)) return length // let the inner device reject NaN and Infinity
    return Math.max(0, Math.min(length, this.size - offset))
  }
}

/**
 * A write-back cache that never writes back: writes land in a private copy of the "disk",
 * flush lies, and close drops the copy, so reopening shows the disk as it was.
 */
export class LosesDataOnReopen extends DeviceBase {
  readonly #cache: Uint8Array
  constructor(readonly disk: Uint8Array) {
    super(disk.length, { flush: true, persistent: true })
    this.#cache = disk.slice()
  }
  /** Closes `device` and opens its disk again. */
  static async reopen(device: BlockDevice): Promise<BlockDevice> {
    const broken = device as LosesDataOnReopen
    await broken.close()
    return new LosesDataOnReopen(broken.disk)
  }
  protected async _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    into.set(this.#cache.subarray(offset, offset + into.length))
  }
  protected async _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    this.#cache.set(data, offset)
  }
  protected async _flush(): Promise<void> {} // the bug: nothing reaches `disk`
  protected async _close(): Promise<void> {}
}
