// testing/seeded-random.ts: a small seeded generator (mulberry32), so that a random power cut
// or fault schedule can be replayed exactly from the seed a failing test printed.

/**
 * Uniform numbers in [0, 1) from `seed`: the same seed gives the same numbers.
 * @example
 * const random = seededRandom(42)
 * const image = crashDevice.crash({ random })
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
