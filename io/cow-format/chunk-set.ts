// io/cow-format/chunk-set.ts: a set of chunk numbers for the loader's duplicate checks. Chunk
// numbers are dense (COW chunks up to the device's end, origin chunks up to the origin's), so
// a bitmap answers in one probe and costs one bit a chunk: loading a 1,000,000-record table
// with two `Set`s took 1.6 s. Numbers beyond what a bitmap should span go to a `Set`.

/** Bitmaps never grow past this many chunks (16 MiB); larger numbers use the Set. */
const BITMAP_LIMIT = 1 << 27

export class ChunkSet {
  #bits = new Uint8Array(1024)
  readonly #sparse = new Set<number>()

  has(chunk: number): boolean {
    if (chunk >= BITMAP_LIMIT) return this.#sparse.has(chunk)
    const byte = chunk >>> 3
    return byte < this.#bits.length && (this.#bits[byte]! & (1 << (chunk & 7))) !== 0
  }

  add(chunk: number): void {
    if (chunk >= BITMAP_LIMIT) {
      this.#sparse.add(chunk)
      return
    }
    const byte = chunk >>> 3
    if (byte >= this.#bits.length) this.#grow(byte)
    this.#bits[byte]! |= 1 << (chunk & 7)
  }

  #grow(byte: number): void {
    let length = this.#bits.length * 2
    while (length <= byte) length *= 2
    const bits = new Uint8Array(Math.min(length, BITMAP_LIMIT >>> 3))
    bits.set(this.#bits)
    this.#bits = bits
  }
}
