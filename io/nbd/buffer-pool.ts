// io/nbd/buffer-pool.ts: a small free-list of one connection's reply buffers (READ replies,
// done headers), by exact size, keeping at most `maxBytes`. A buffer has one owner at a time:
// it comes back only when nothing refers to it any more (a reply: after the socket's write
// callback). A recycled buffer still holds this connection's earlier reply; its user
// overwrites all of it.

/** Free buffers by size; `acquire` reuses one or allocates a zeroed one, `release` keeps it if there is room. */
export class BufferPool {
  readonly #free = new Map<number, Buffer[]>()
  readonly #maxBytes: number
  readonly #maxSize: number
  #bytes = 0

  /** Keeps at most `maxBytes` of free buffers, none longer than `maxSize`. */
  constructor(maxBytes: number, maxSize: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`BufferPool maxBytes must be a whole number ≥ 0, not ${maxBytes}`)
    if (!Number.isSafeInteger(maxSize) || maxSize < 0) throw new RangeError(`BufferPool maxSize must be a whole number ≥ 0, not ${maxSize}`)
    this.#maxBytes = maxBytes
    this.#maxSize = maxSize
  }

  /** Bytes held in free buffers. */
  get bytes(): number {
    return this.#bytes
  }

  /** A buffer of exactly `size` bytes that no one else holds: a free one, else a new zeroed one. */
  acquire(size: number): Buffer {
    const free = this.#free.get(size)
    const reused = free?.pop()
    if (reused === undefined) return Buffer.alloc(size)
    this.#bytes -= size
    return reused
  }

  /** Gives back a buffer from `acquire` that nothing refers to any more; dropped when the pool is full. */
  release(buffer: Buffer): void {
    const size = buffer.length
    // Only whole buffers from acquire: a view would let two owners share memory.
    if (buffer.byteOffset !== 0 || buffer.buffer.byteLength !== size) throw new RangeError(`BufferPool.release: a view of ${size} bytes at ${buffer.byteOffset} is not a buffer from acquire`)
    if (size === 0 || size > this.#maxSize || this.#bytes + size > this.#maxBytes) return
    let free = this.#free.get(size)
    if (free === undefined) this.#free.set(size, (free = []))
    if (free.includes(buffer)) throw new RangeError(`BufferPool.release: this ${size}-byte buffer was released twice`)
    free.push(buffer)
    this.#bytes += size
  }
}
