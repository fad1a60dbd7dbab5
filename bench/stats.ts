// bench/stats.ts: the few statistics the benchmark prints: median with min..max over
// repetitions, and latency percentiles (nearest rank).

/** A measurement over repetitions. */
export interface Summary {
  median: number
  min: number
  max: number
  /** Repetitions summarised. */
  n: number
}

/** Median (mean of the middle two for an even count), min and max; throws on no values. */
export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new RangeError('summarize: no values')
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, n: sorted.length }
}

/** The nearest-rank percentile `p` (0 < p ≤ 100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError('percentile: no values')
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1]!
}
