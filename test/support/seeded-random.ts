// test/support/seeded-random.ts: deterministic random numbers from a seed, drawn from the
// oracle's data generator (so the kernel tests' workloads are the same on every machine).
import { gen } from './kernel-vectors.js'

/** A deterministic stream of numbers below `n` from a seed (the oracle's generator). */
export class SeededRandom {
  readonly #words: Uint32Array
  #next = 0
  constructor(seed: string, count = 1 << 20) {
    this.#words = new Uint32Array(Uint8Array.from(gen(seed, count * 4)).buffer) // a copy: aligned
  }
  below(n: number): number {
    if (this.#next === this.#words.length) throw new Error('SeededRandom: stream exhausted')
    return this.#words[this.#next++]! % n
  }
  /** An integer in [from, to]. */
  between(from: number, to: number): number {
    return from + this.below(to - from + 1)
  }
  pick(weights: readonly number[]): number {
    let r = this.below(weights.reduce((a, b) => a + b, 0))
    for (let i = 0; ; i++) {
      r -= weights[i]!
      if (r < 0) return i
    }
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.below(i + 1)
      ;[items[i], items[j]] = [items[j]!, items[i]!]
    }
    return items
  }
}
