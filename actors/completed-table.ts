// actors/completed-table.ts: the completed-exception table of one snapshot, origin chunk →
// COW chunk (spec §11; architecture rules 3 and 4). A chunk in quiescent Completed has no
// actor, only an entry here, and a lookup is one probe that allocates nothing. Entries are
// single chunks, not §11's runs: open addressing over one Uint32Array costs ~17 bytes each.
import type { NewChunk, OldChunk } from '../io/units.js'
import { asNewChunk, asOldChunk } from '../io/units.js'

/** Slot keys are `old + 1` (0 marks an empty slot), so `old` must be at most this. */
const MAX_SLOT_OLD = 0xffff_fffe
/** Slot value meaning "the COW chunk is ≥ 2^32 − 1 and lives in the wide map". */
const WIDE = 0xffff_ffff
/** 2^32 / golden ratio: Fibonacci hashing spreads sequential chunks evenly over the slots. */
const GOLDEN = 0x9e37_79b9
const MIN_CAPACITY = 8

/** True when `n` is an integer in 0 … 2^32 − 2, i.e. can be a slot key. */
const fitsSlot = (n: number): boolean => n >>> 0 === n && n !== WIDE

const checkChunk = (what: string, n: number): void => {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`)
  }
}

/**
 * Maps origin chunks to COW chunks for one snapshot.
 *
 * Linear probing over one `Uint32Array` of `[old + 1, new]` pairs, capacity a power of two,
 * load kept ≤ 3/4 (grows by doubling) and ≥ 1/8 (shrinks by halving, not below the initial
 * capacity), backward-shift deletion (no tombstones). Chunks that do not fit 32 bits (origin
 * chunk ≥ 2^32 − 1 or COW chunk ≥ 2^32 − 1) go to a small `Map`, created on first use.
 * `get`, `has`, `set` and `delete` allocate nothing except when the table resizes or an
 * entry involves such a huge chunk. Iteration order is unspecified; the table must not be
 * changed while it is being iterated.
 *
 * @example
 * ```ts
 * const table = new CompletedTable()
 * table.set(asOldChunk(5), asNewChunk(2))
 * table.get(asOldChunk(5)) // 2
 * table.get(asOldChunk(6)) // undefined: not remapped
 * table.delete(asOldChunk(5)) // true (merge copied it back)
 * ```
 */
export class CompletedTable {
  /** Pairs `[old + 1, new]`; key 0 = empty; value WIDE = look in #wide. */
  #slots: Uint32Array
  /** capacity − 1 (capacity in pairs). */
  #mask: number
  /** 32 − log2(capacity): the hash takes the top bits of the product. */
  #shift: number
  #used = 0
  /** Entries whose old or new chunk does not fit a slot. */
  #wide: Map<number, number> | undefined
  /** Entries of #wide that have no slot (old > MAX_SLOT_OLD). */
  #wideOnly = 0
  readonly #minCapacity: number

  /** `expectedEntries` presizes the table (e.g. the record count found on load). */
  constructor(expectedEntries = 0) {
    checkChunk('expectedEntries', expectedEntries)
    let capacity = MIN_CAPACITY
    while (capacity * 3 < expectedEntries * 4) capacity *= 2
    this.#minCapacity = capacity
    this.#slots = new Uint32Array(capacity * 2)
    this.#mask = capacity - 1
    this.#shift = Math.clz32(capacity) + 1
  }

  /** Number of exceptions. */
  get size(): number {
    return this.#used + this.#wideOnly
  }

  /** The COW chunk `old` is remapped to, or `undefined`. One probe, no allocation. */
  get(old: OldChunk): NewChunk | undefined {
    if (!fitsSlot(old)) return this.#wide?.get(old) as NewChunk | undefined
    const p = this.#probe(old + 1)
    if (this.#slots[p] === 0) return undefined
    const value = this.#slots[p + 1]!
    return (value === WIDE ? this.#wide!.get(old) : value) as NewChunk
  }

  has(old: OldChunk): boolean {
    if (!fitsSlot(old)) return this.#wide?.has(old) ?? false
    return this.#slots[this.#probe(old + 1)] !== 0
  }

  /**
   * Records `old → new`. If `old` is already present its COW chunk is **replaced** (the
   * engine never does this for a live exception; it is defined so that load and tests may).
   * Throws RangeError for a chunk that is not a non-negative safe integer.
   */
  set(old: OldChunk, newChunk: NewChunk): this {
    checkChunk('old chunk', old)
    checkChunk('new chunk', newChunk)
    if (!fitsSlot(old)) {
      const wide = (this.#wide ??= new Map())
      if (!wide.has(old)) this.#wideOnly++
      wide.set(old, newChunk)
      return this
    }
    const key = old + 1
    let p = this.#probe(key)
    if (this.#slots[p] === 0) {
      const capacity = this.#mask + 1
      if ((this.#used + 1) * 4 > capacity * 3) {
        this.#resize(capacity * 2)
        p = this.#probe(key)
      }
      this.#slots[p] = key
      this.#used++
    } else if (this.#slots[p + 1] === WIDE) {
      this.#wide!.delete(old)
    }
    if (newChunk < WIDE) {
      this.#slots[p + 1] = newChunk
    } else {
      this.#slots[p + 1] = WIDE
      ;(this.#wide ??= new Map()).set(old, newChunk)
    }
    return this
  }

  /** Removes `old` (merge, §12); returns whether it was present. */
  delete(old: OldChunk): boolean {
    if (!fitsSlot(old)) {
      if (this.#wide?.delete(old) !== true) return false
      this.#wideOnly--
      return true
    }
    const slots = this.#slots
    const p = this.#probe(old + 1)
    if (slots[p] === 0) return false
    if (slots[p + 1] === WIDE) this.#wide!.delete(old)
    // Backward shift: pull later entries of the probe run into the hole unless their home
    // slot lies cyclically after the hole (moving them would make them unreachable).
    const mask = this.#mask
    let hole = p >>> 1
    let i = hole
    for (;;) {
      i = (i + 1) & mask
      const key = slots[i << 1]!
      if (key === 0) break
      const home = Math.imul(key, GOLDEN) >>> this.#shift
      if (((i - home) & mask) >= ((i - hole) & mask)) {
        slots[hole << 1] = key
        slots[(hole << 1) + 1] = slots[(i << 1) + 1]!
        hole = i
      }
    }
    slots[hole << 1] = 0
    slots[(hole << 1) + 1] = 0
    this.#used--
    const capacity = mask + 1
    if (this.#used * 8 < capacity && capacity > this.#minCapacity) this.#resize(capacity / 2)
    return true
  }

  /** Removes every entry and gives back memory beyond the initial capacity. */
  clear(): void {
    if (this.#mask + 1 === this.#minCapacity) this.#slots.fill(0)
    else this.#resize(this.#minCapacity, false)
    this.#used = 0
    this.#wide = undefined
    this.#wideOnly = 0
  }

  /** Calls `fn(old, new)` for every entry once, in unspecified order. */
  forEach(fn: (old: OldChunk, newChunk: NewChunk) => void): void {
    for (const [old, newChunk] of this) fn(old, newChunk)
  }

  /** Every `[old, new]` once, in unspecified order (tests and diagnostics; allocates). */
  *entries(): IterableIterator<[OldChunk, NewChunk]> {
    const slots = this.#slots
    for (let p = 0; p < slots.length; p += 2) {
      const key = slots[p]!
      if (key === 0) continue
      const value = slots[p + 1]!
      yield [asOldChunk(key - 1), asNewChunk(value === WIDE ? this.#wide!.get(key - 1)! : value)]
    }
    if (this.#wide === undefined) return
    for (const [old, newChunk] of this.#wide) {
      if (!fitsSlot(old)) yield [asOldChunk(old), asNewChunk(newChunk)]
    }
  }

  [Symbol.iterator](): IterableIterator<[OldChunk, NewChunk]> {
    return this.entries()
  }

  /** Rough heap cost in bytes: the slot array plus ~64 bytes per wide entry. */
  heapBytes(): number {
    return this.#slots.byteLength + (this.#wide?.size ?? 0) * 64
  }

  /** Position (even index) of `key`'s pair, or of the empty pair ending its probe run. */
  #probe(key: number): number {
    const slots = this.#slots
    const mask = this.#mask
    let i = Math.imul(key, GOLDEN) >>> this.#shift
    for (;;) {
      const p = i << 1
      const k = slots[p]
      if (k === key || k === 0) return p
      i = (i + 1) & mask
    }
  }

  #resize(capacity: number, rehash = true): void {
    const old = this.#slots
    this.#slots = new Uint32Array(capacity * 2)
    this.#mask = capacity - 1
    this.#shift = Math.clz32(capacity) + 1
    if (!rehash) return
    for (let p = 0; p < old.length; p += 2) {
      const key = old[p]!
      if (key === 0) continue
      const q = this.#probe(key)
      this.#slots[q] = key
      this.#slots[q + 1] = old[p + 1]!
    }
  }
}
