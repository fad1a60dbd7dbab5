// io/nbd/byte-queue.ts: the bytes a client has sent and nobody has consumed yet, as the socket's
// own chunks. `take(n)` returns a view into a chunk when the bytes lie in one (no copy), and
// copies only when they straddle chunks; `contiguous`/`skip` let the request parser read a
// header in place, and `takeInto` copies a straddling one into the parser's own scratch buffer.
// The handshake and the request parser share one queue.

/** A FIFO of received bytes that hands out exact-length pieces. */
export class ByteQueue {
  readonly #chunks: Buffer[] = []
  #head = 0 // bytes of #chunks[0] already taken
  #length = 0

  /** Bytes waiting. */
  get length(): number {
    return this.#length
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.#chunks.push(chunk)
    this.#length += chunk.length
  }

  /** The next `n` bytes, or undefined (taking nothing) while fewer than `n` have arrived. */
  take(n: number): Buffer | undefined {
    if (n > this.#length) return undefined
    if (n === 0) return Buffer.alloc(0)
    const first = this.#chunks[0]!
    if (first.length - this.#head >= n) {
      const view = first.subarray(this.#head, this.#head + n)
      this.#advance(n)
      return view
    }
    const out = Buffer.allocUnsafe(n)
    this.takeInto(out)
    return out
  }

  /**
   * The received chunk holding the next `n` bytes, starting at `offset`, when they lie in one
   * chunk; otherwise (or while fewer have arrived) undefined. Takes nothing: call `skip(n)`.
   */
  contiguous(n: number): Buffer | undefined {
    const first = this.#chunks[0]
    return first !== undefined && first.length - this.#head >= n ? first : undefined
  }

  /** Where the next byte lies in the chunk `contiguous` returned. */
  get offset(): number {
    return this.#head
  }

  /** Drops the next `n` bytes, which must have arrived (see `length`). */
  skip(n: number): void {
    if (n > this.#length) throw new RangeError(`ByteQueue.skip(${n}) with only ${this.#length} bytes waiting`)
    while (n > 0) {
      const part = Math.min(n, this.#chunks[0]!.length - this.#head)
      this.#advance(part)
      n -= part
    }
  }

  /** Copies the next `out.length` bytes into `out` and takes them; false (taking nothing) while fewer have arrived. */
  takeInto(out: Buffer): boolean {
    const n = out.length
    if (n > this.#length) return false
    let filled = 0
    while (filled < n) {
      const chunk = this.#chunks[0]!
      const part = Math.min(n - filled, chunk.length - this.#head)
      chunk.copy(out, filled, this.#head, this.#head + part)
      filled += part
      this.#advance(part)
    }
    return true
  }

  #advance(n: number): void {
    this.#head += n
    this.#length -= n
    if (this.#head === this.#chunks[0]!.length) {
      this.#chunks.shift()
      this.#head = 0
    }
  }
}
