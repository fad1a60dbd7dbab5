// io/device-base.ts: the checks every adapter shares (api.md "Devices"), so adapters hold
// only I/O. Misuse (bad buffer, misaligned or out-of-range request) rejects with a TypeError or
// RangeError naming the value before any I/O; closed and read-only devices reject with a
// SnapcowError. Subclasses implement `_read`, `_write`, `_flush` and `_close`.

import type { BlockDevice, DeviceSupports } from './block-device.js'
import { SnapcowError } from './errors.js'
import { asByteOffset, SECTOR_BYTES, type ByteOffset } from './units.js'

/**
 * Options every adapter built on {@link DeviceBase} understands.
 * @example
 * const image = MemoryDevice.from(bytes, { readOnly: true })
 */
export interface DeviceBaseOptions {
  /** Reject every write with `SNAPCOW_READ_ONLY`. Default false. */
  readOnly?: boolean
}

/**
 * Throws a RangeError unless `size` is a non-negative safe integer multiple of 512.
 * @internal Shared by adapters that must validate a size before creating storage.
 * @example
 * checkDeviceSize(4096, 'MemoryDevice size') // ok; 1000 throws RangeError
 */
export function checkDeviceSize(size: number, what = 'device size'): void {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size % SECTOR_BYTES !== 0) {
    throw new RangeError(`${what} ${String(size)} is not a non-negative multiple of ${SECTOR_BYTES}`)
  }
}

/** RangeError unless `value` is a safe integer ≥ 0 and a multiple of 512. */
function checkAligned(what: 'offset' | 'length', value: number): void {
  if (typeof value !== 'number') throw new TypeError(`${what} must be a number, got ${typeof value}`)
  const shown = String(value)
  if (!Number.isSafeInteger(value)) throw new RangeError(`${what} ${shown} is not a safe integer`)
  if (value < 0) throw new RangeError(`${what} ${shown} is negative`)
  if (value % SECTOR_BYTES !== 0) throw new RangeError(`${what} ${shown} is not a multiple of ${SECTOR_BYTES}`)
}

/** What an empty request resolves with: nothing to wait for. */
const DONE: Promise<void> = Promise.resolve()

/**
 * Base class for block device adapters: validates every request, then calls the protected
 * `_read`/`_write`/`_flush`/`_close` hooks only for aligned, in-range, non-empty I/O on an
 * open device. Errors thrown by the checks surface as rejected promises.
 * @example
 * class NullDevice extends DeviceBase {
 *   constructor(size: number) { super(size, { flush: true, persistent: false }) }
 *   protected async _read(_offset: ByteOffset, into: Uint8Array) { into.fill(0) }
 *   protected async _write() {}
 *   protected async _flush() {}
 *   protected async _close() {}
 * }
 */
export abstract class DeviceBase implements BlockDevice {
  /** Size in bytes, a multiple of 512. */
  readonly size: number
  /** What this adapter can do beyond read and write. */
  readonly supports: DeviceSupports
  /** True when every write rejects with `SNAPCOW_READ_ONLY`. */
  readonly readOnly: boolean
  #closing: Promise<void> | undefined

  constructor(size: number, supports: DeviceSupports, options: DeviceBaseOptions = {}) {
    checkDeviceSize(size)
    this.size = size
    this.supports = supports
    this.readOnly = options.readOnly === true
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closing !== undefined
  }

  /** Fills all of `buffer` with the bytes at `offset`. */
  read(offset: number, buffer: Uint8Array): Promise<void> {
    // Not async: the adapter's own promise is returned as it is (no extra frame per request);
    // a refused request still rejects rather than throws.
    try {
      this.#checkOpen('read')
      this.#checkRequest('read', offset, buffer)
      if (buffer.length === 0) return DONE
      return this._read(asByteOffset(offset), buffer)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Writes all of `data` at `offset`. */
  write(offset: number, data: Uint8Array): Promise<void> {
    try {
      if (this.#checkWrite(offset, data)) return this._write(asByteOffset(offset), data)
      return DONE
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Writes all of `data` at `offset` and resolves once it is durable (REQ_FUA). */
  writeFua(offset: number, data: Uint8Array): Promise<void> {
    try {
      if (this.#checkWrite(offset, data)) return this._writeFua(asByteOffset(offset), data)
      return DONE
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Resolves once every acknowledged write is durable. */
  flush(): Promise<void> {
    try {
      this.#checkOpen('flush')
      return this._flush()
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Releases the device; later I/O rejects with `SNAPCOW_DEVICE_CLOSED`. Closing twice is harmless. */
  close(): Promise<void> {
    // Every caller waits for the same underlying close, and `_close` runs once.
    this.#closing ??= Promise.resolve().then(() => this._close())
    return this.#closing
  }

  /** Called only with an aligned, in-range, non-empty request on an open device. */
  protected abstract _read(offset: ByteOffset, into: Uint8Array): Promise<void>
  /** Called only with an aligned, in-range, non-empty request on an open, writable device. */
  protected abstract _write(offset: ByteOffset, data: Uint8Array): Promise<void>
  /** Called only on an open device. */
  protected abstract _flush(): Promise<void>
  /**
   * Called like `_write`; resolves once the write is durable. By default the write and then a
   * flush (durable, and more: every earlier write too); adapters override it with a cheaper way.
   */
  protected _writeFua(offset: ByteOffset, data: Uint8Array): Promise<void> {
    return this._write(offset, data).then(() => this._flush())
  }
  /** Called once, by the first `close()`. */
  protected abstract _close(): Promise<void>

  /** Throws for a refused write; returns false when there is nothing to write. */
  #checkWrite(offset: number, data: Uint8Array): boolean {
    this.#checkOpen('write')
    this.#checkRequest('write', offset, data)
    if (this.readOnly) throw new SnapcowError('SNAPCOW_READ_ONLY', `cannot write to a read-only device (offset ${offset})`)
    return data.length !== 0
  }

  #checkOpen(op: string): void {
    if (this.closed) throw new SnapcowError('SNAPCOW_DEVICE_CLOSED', `cannot ${op}: the device is closed`)
  }

  #checkRequest(op: 'read' | 'write', offset: number, buffer: Uint8Array): void {
    if (!(buffer instanceof Uint8Array)) {
      throw new TypeError(`${op}: ${op === 'read' ? 'buffer' : 'data'} must be a Uint8Array`)
    }
    checkAligned('offset', offset)
    checkAligned('length', buffer.length)
    if (offset + buffer.length > this.size) {
      throw new RangeError(
        `${op} of length ${buffer.length} at offset ${offset} runs past the end of the device (size ${this.size})`,
      )
    }
  }
}
