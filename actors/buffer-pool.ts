// actors/buffer-pool.ts: buffers the copier reuses (architecture rule 4: no allocation per bio
// that can be avoided). A buffer goes back once every device request using it has settled; a
// device may not keep a reference to a write's bytes after the write settles (BlockDevice).

export class BufferPool {
  readonly #free = new Map<number, Uint8Array[]>()

  /** @param keepPerSize how many free buffers of one size are kept; more are left to the GC. */
  constructor(private readonly keepPerSize = 64) {}

  /** A buffer of exactly `bytes` bytes; its content is whatever was there. */
  take(bytes: number): Uint8Array {
    return this.#free.get(bytes)?.pop() ?? new Uint8Array(bytes)
  }

  give(buffer: Uint8Array): void {
    let list = this.#free.get(buffer.length)
    if (list === undefined) this.#free.set(buffer.length, list = [])
    if (list.length < this.keepPerSize) list.push(buffer)
  }
}
