// test/fuzz/store-mutations.ts: the ways the store fuzzer damages a COW image (bit flips, byte
// overwrites, header fields, records aimed at bad chunks, duplicates, the end marker moved,
// zeroed or garbage chunks, truncation) as fast-check arbitraries, and how each is applied.
// Positions are drawn as plain numbers and resolved against the image when applied, so one
// arbitrary serves every base store and a shrunk counterexample stays readable.
import fc from 'fast-check'

/** Chunk 0 (the header) or metadata area `n` (resolved modulo the areas the image holds). */
export type Region = { chunk: 'header' } | { area: number }

/** A chunk number chosen by what it means for this image. */
export type ChunkValue =
  | { to: 'metadata'; pick: number } // the header chunk or an area's location
  | { to: 'past-end'; by: number } // device chunks + by
  | { to: 'last-chunk' } // the device's last whole chunk
  | { to: 'origin-edge'; by: -1 | 0 | 1 } // around the origin's chunk count
  | { to: 'huge'; value: bigint } // 2^32, 2^53 - 1, 2^53, 2^53 + 1, 2^64 - 1 …
  | { to: 'any'; value: bigint }

export type Mutation =
  | { kind: 'flip'; region: Region; byte: number; bit: number }
  | { kind: 'poke'; region: Region; byte: number; value: number }
  | { kind: 'field'; field: 'magic' | 'valid' | 'version' | 'chunk_size'; value: number }
  | { kind: 'record'; area: number; slot: number; which: 'old' | 'new'; value: ChunkValue }
  | { kind: 'duplicate'; area: number; from: number; to: number; which: 'old' | 'new' }
  | { kind: 'swap-new'; area: number; a: number; b: number }
  | { kind: 'end-earlier'; area: number; slot: number }
  | { kind: 'end-later'; area: number; count: number }
  | { kind: 'zero'; region: Region }
  | { kind: 'garbage'; region: Region; from: number; length: number; seed: number }
  | { kind: 'truncate'; chunks: number; sectors: number }
  | { kind: 'grow'; sectors: number }

const region: fc.Arbitrary<Region> = fc.oneof(
  fc.constant({ chunk: 'header' as const }),
  fc.record({ area: fc.nat({ max: 7 }) }),
)
/** Header bytes 0-15 carry the fields: most pokes go there. */
const byteIn = fc.oneof({ weight: 3, arbitrary: fc.nat({ max: 15 }) }, { weight: 1, arbitrary: fc.nat({ max: 1 << 20 }) })
const HUGE = [2n ** 32n, 2n ** 32n + 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 2n, 2n ** 64n - 1n]
const chunkValue: fc.Arbitrary<ChunkValue> = fc.oneof(
  fc.record({ to: fc.constant('metadata' as const), pick: fc.nat({ max: 7 }) }),
  fc.record({ to: fc.constant('past-end' as const), by: fc.nat({ max: 3 }) }),
  fc.constant({ to: 'last-chunk' as const }),
  fc.record({ to: fc.constant('origin-edge' as const), by: fc.constantFrom(-1 as const, 0 as const, 1 as const) }),
  fc.record({ to: fc.constant('huge' as const), value: fc.constantFrom(...HUGE) }),
  fc.record({ to: fc.constant('any' as const), value: fc.oneof(fc.bigInt({ min: 0n, max: 600n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })) }),
)
const FIELD_VALUES = [0, 1, 2, 3, 0x70416e53, 0x70416e54, 2 ** 21, 2 ** 21 + 1, 2 ** 22, 4_194_303, 2 ** 31, 2 ** 32 - 1]

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), region, byte: byteIn, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('poke' as const), region, byte: byteIn, value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('field' as const), field: fc.constantFrom('magic' as const, 'valid' as const, 'version' as const, 'chunk_size' as const),
    value: fc.oneof(fc.constantFrom(...FIELD_VALUES), fc.constantFrom(1, 2, 4, 8, 16, 32, 128, 1024), fc.nat({ max: 2 ** 32 - 1 })) }),
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('record' as const), area: fc.nat({ max: 7 }), slot: fc.nat(), which: fc.constantFrom('old' as const, 'new' as const), value: chunkValue }) },
  fc.record({ kind: fc.constant('duplicate' as const), area: fc.nat({ max: 7 }), from: fc.nat(), to: fc.nat(), which: fc.constantFrom('old' as const, 'new' as const) }),
  fc.record({ kind: fc.constant('swap-new' as const), area: fc.nat({ max: 7 }), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('end-earlier' as const), area: fc.nat({ max: 7 }), slot: fc.nat() }),
  fc.record({ kind: fc.constant('end-later' as const), area: fc.nat({ max: 7 }), count: fc.oneof(fc.nat({ max: 3 }), fc.constant(1 << 20)) }),
  fc.record({ kind: fc.constant('zero' as const), region }),
  fc.record({ kind: fc.constant('garbage' as const), region, from: fc.nat(), length: fc.integer({ min: 1, max: 1 << 14 }), seed: fc.nat() }),
  fc.record({ kind: fc.constant('truncate' as const), chunks: fc.oneof(fc.constantFrom(0, 1, 2), fc.nat()), sectors: fc.nat({ max: 3 }) }),
  fc.record({ kind: fc.constant('grow' as const), sectors: fc.integer({ min: 1, max: 64 }) }),
)

/** The layout of an image of `chunkSectors` (the base's: a mutated header does not move its areas). */
class Layout {
  readonly chunkBytes: number
  readonly perArea: number
  readonly stride: number
  #bytes!: Uint8Array
  view!: DataView
  constructor(bytes: Uint8Array, chunkSectors: number, readonly originBytes: number) {
    this.chunkBytes = chunkSectors * 512
    this.perArea = this.chunkBytes / 16
    this.stride = this.perArea + 1
    this.bytes = bytes
  }

  get bytes(): Uint8Array { return this.#bytes }
  /** Truncating or growing replaces the bytes (and their view). */
  set bytes(bytes: Uint8Array) {
    this.#bytes = bytes
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }
  get deviceChunks(): number { return Math.floor(this.bytes.length / this.chunkBytes) }
  /** Metadata areas whose chunk lies wholly inside the image (at least area 0, for positions). */
  get areas(): number { return Math.max(1, Math.floor((this.deviceChunks - 1 + this.perArea) / this.stride)) }
  areaStart(n: number): number { return (1 + (n % this.areas) * this.stride) * this.chunkBytes }
  /** Byte range of a region, clipped to the image (may be empty). */
  range(r: Region): [number, number] {
    const start = 'chunk' in r ? 0 : this.areaStart(r.area)
    return [Math.min(start, this.bytes.length), Math.min(start + this.chunkBytes, this.bytes.length)]
  }

  /** Records before the terminator in area `n` (slots past the image count as zero). */
  used(n: number): number {
    const start = this.areaStart(n)
    for (let slot = 0; slot < this.perArea; slot++) {
      if (start + slot * 16 + 16 > this.bytes.length || this.view.getBigUint64(start + slot * 16 + 8, true) === 0n) return slot
    }
    return this.perArea
  }

  /** A slot of area `n`, mostly among the records in use, the terminator or the one after it. */
  slot(n: number, pick: number): number {
    const span = pick % 4 === 0 ? this.perArea : Math.min(this.perArea, this.used(n) + 2)
    return Math.floor(pick / 4) % span
  }

  /** Byte offset of a record field, or undefined when it lies past the image. */
  field(n: number, slot: number, which: 'old' | 'new'): number | undefined {
    const at = this.areaStart(n) + slot * 16 + (which === 'new' ? 8 : 0)
    return at + 8 <= this.bytes.length ? at : undefined
  }

  resolve(value: ChunkValue): bigint {
    switch (value.to) {
      case 'metadata': return value.pick === 0 ? 0n : BigInt(1 + ((value.pick - 1) % this.areas) * this.stride)
      case 'past-end': return BigInt(this.deviceChunks + value.by)
      case 'last-chunk': return BigInt(Math.max(0, this.deviceChunks - 1))
      case 'origin-edge': return BigInt(Math.max(0, Math.ceil(this.originBytes / this.chunkBytes) + value.by))
      case 'huge': case 'any': return value.value
    }
  }

  /** The largest old and new chunk in the table as it stands (for plausible appended records). */
  extremes(): { maxOld: bigint; maxNew: bigint } {
    let maxOld = 0n
    let maxNew = 1n
    for (let n = 0; n < this.areas; n++) {
      const used = this.used(n)
      for (let slot = 0; slot < used; slot++) {
        const at = this.areaStart(n) + slot * 16
        const o = this.view.getBigUint64(at, true)
        const nc = this.view.getBigUint64(at + 8, true)
        if (o > maxOld) maxOld = o
        if (nc > maxNew) maxNew = nc
      }
      if (used < this.perArea) break
    }
    return { maxOld, maxNew }
  }
}

/** A small deterministic byte stream for garbage (xorshift32). */
function fillGarbage(into: Uint8Array, seed: number): void {
  let x = (seed | 0) || 0x9e3779b9
  for (let i = 0; i < into.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    into[i] = x & 0xff
  }
}

const FIELD_AT = { magic: 0, valid: 4, version: 8, chunk_size: 12 } as const

/**
 * A mutated copy of `image` (a store of `chunkSectors`, made on an origin of `originBytes`),
 * made in `scratch` when given (as long as the image: allocating megabytes per store is what
 * would make the fuzzer slow); the result may be a view of it.
 */
export function applyMutations(image: Uint8Array, chunkSectors: number, originBytes: number, mutations: readonly Mutation[],
  scratch?: Uint8Array): Uint8Array {
  scratch?.set(image)
  const l = new Layout(scratch ?? image.slice(), chunkSectors, originBytes)
  for (const m of mutations) applyOne(l, m)
  return l.bytes
}

function applyOne(l: Layout, m: Mutation): void {
  const { bytes } = l
  switch (m.kind) {
    case 'flip': case 'poke': {
      const [start, end] = l.range(m.region)
      if (end <= start) return
      const at = start + (m.byte % (end - start))
      bytes[at] = m.kind === 'flip' ? bytes[at]! ^ (1 << m.bit) : m.value
      return
    }
    case 'field':
      if (bytes.length >= 16) l.view.setUint32(FIELD_AT[m.field], m.value, true)
      return
    case 'record': {
      const at = l.field(m.area, l.slot(m.area, m.slot), m.which)
      if (at !== undefined) l.view.setBigUint64(at, l.resolve(m.value), true)
      return
    }
    case 'duplicate': {
      const from = l.field(m.area, l.slot(m.area, m.from), m.which)
      const to = l.field(m.area, l.slot(m.area, m.to), m.which)
      if (from !== undefined && to !== undefined) bytes.copyWithin(to, from, from + 8)
      return
    }
    case 'swap-new': { // new chunks out of allocation order: still a sound table
      const a = l.field(m.area, l.slot(m.area, m.a), 'new')
      const b = l.field(m.area, l.slot(m.area, m.b), 'new')
      if (a === undefined || b === undefined) return
      const va = l.view.getBigUint64(a, true)
      l.view.setBigUint64(a, l.view.getBigUint64(b, true), true)
      l.view.setBigUint64(b, va, true)
      return
    }
    case 'end-earlier': {
      const used = l.used(m.area)
      const at = l.field(m.area, used === 0 ? 0 : m.slot % used, 'new')
      if (at !== undefined) l.view.setBigUint64(at, 0n, true)
      return
    }
    case 'end-later': { // plausible records past the terminator: fresh old and new chunks
      let { maxOld, maxNew } = l.extremes()
      const used = l.used(m.area)
      for (let slot = used; slot < Math.min(l.perArea, used + m.count); slot++) {
        const oldAt = l.field(m.area, slot, 'old')
        if (oldAt === undefined) return
        maxNew++
        if (maxNew % BigInt(l.stride) === 1n) maxNew++
        l.view.setBigUint64(oldAt, ++maxOld, true)
        l.view.setBigUint64(oldAt + 8, maxNew, true)
      }
      return
    }
    case 'zero': {
      const [start, end] = l.range(m.region)
      bytes.fill(0, start, end)
      return
    }
    case 'garbage': {
      const [start, end] = l.range(m.region)
      if (end <= start) return
      const from = start + (m.from % (end - start))
      fillGarbage(bytes.subarray(from, Math.min(end, from + m.length)), m.seed)
      return
    }
    case 'truncate': { // to a chunk boundary, or a few sectors past one
      const sectors = Math.floor(bytes.length / 512)
      const keep = Math.min(sectors, (m.chunks % (l.deviceChunks + 1)) * (l.chunkBytes / 512) + m.sectors)
      l.bytes = bytes.subarray(0, keep * 512)
      return
    }
    case 'grow': {
      const grown = new Uint8Array(bytes.length + m.sectors * 512)
      grown.set(bytes)
      l.bytes = grown
    }
  }
}
