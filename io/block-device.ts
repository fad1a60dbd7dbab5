// io/block-device.ts: the one interface every device, origin and snapshot implements (api.md).

/** What an adapter can do beyond read and write; the conformance suite picks its tests by it. */
export interface DeviceSupports {
  /** `flush()` makes acknowledged writes durable (a no-op is honest for memory). */
  readonly flush: boolean
  /** Data written, flushed and closed is there again after reopening (files, not memory). */
  readonly persistent: boolean
}

/**
 * A random-access volume addressed in bytes. Offsets and lengths must be multiples of 512
 * and lie inside the device; anything else rejects with a RangeError naming the value,
 * and nothing is read or written.
 * @example
 * const dev: BlockDevice = new MemoryDevice(1 << 20)
 * await dev.write(4096, new Uint8Array(512).fill(7))
 */
export interface BlockDevice {
  /** Size in bytes, a multiple of 512. */
  readonly size: number
  /** Fills all of `buffer` from `offset`. */
  read(offset: number, buffer: Uint8Array): Promise<void>
  /**
   * Writes all of `data` at `offset`. The caller may reuse `data` once the returned promise
   * settles: an adapter must not keep a reference to it beyond that.
   */
  write(offset: number, data: Uint8Array): Promise<void>
  /** Resolves once every acknowledged write is durable. */
  flush(): Promise<void>
  /**
   * Optional: writes `data` at `offset` and resolves only once this write is durable (a
   * forced-unit-access write, the kernel's REQ_FUA); other unflushed writes need not be.
   * The persistent store writes its metadata with it (after a flush, as the kernel's
   * PREFLUSH | FUA); without it, the store writes and then flushes.
   */
  writeFua?(offset: number, data: Uint8Array): Promise<void>
  /** Releases the device; later I/O rejects. Closing twice is harmless. */
  close(): Promise<void>
  /** Optional capabilities, for the conformance suite and the engine. */
  readonly supports?: DeviceSupports
}
