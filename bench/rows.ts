// bench/rows.ts: one row of the result table, and the collector that turns per-repetition
// samples (snapcow, baseline) into medians with min..max and a ratio next to its target.
import type { Summary } from './stats.js'
import { summarize } from './stats.js'

/** A goal from issue 10 item 7, checked on the median; a miss is printed, never fatal. */
export interface Target {
  on: 'ratio' | 'value'
  op: '>=' | '<='
  limit: number
}

export interface RowKey {
  family: string
  workload: string
  /** 'memory', 'file' (a FileDevice on tmpfs), or '-' when no device is involved. */
  device: string
  /** Queue depth, when the workload has one. */
  depth?: number
  executor: string
  /** Unit of the snapcow and baseline values: ops/s and MiB/s are better higher, µs/ms/B lower. */
  unit: string
  /** What the baseline is: 'raw' (same harness, straight to the device), 'journal off', … */
  baselineName?: string
  target?: Target
}

export interface Row extends RowKey {
  /** Undefined: the workload could not run here (the note says why), e.g. "not available yet". */
  value?: Summary
  baseline?: Summary
  /** snapcow ÷ baseline, per repetition. */
  ratio?: Summary
  verdict?: 'PASS' | 'MISS'
  note?: string
}

interface Samples {
  key: RowKey
  values: number[]
  baselines: number[]
  notes: Set<string>
  /** Extra condition for PASS (e.g. no live chunk machine). */
  failed: boolean
  unavailable: boolean
}

/** Collects samples row by row, in the order rows first appear. */
export class Collector {
  readonly #rows = new Map<string, Samples>()

  /** Adds one repetition: snapcow's value, and the baseline's when the row has one. */
  add(key: RowKey, value: number, baseline?: number): void {
    const samples = this.#samples(key)
    samples.values.push(value)
    if (baseline !== undefined) samples.baselines.push(baseline)
  }

  /** A note for the row (deduplicated); `fails` makes the row MISS whatever its numbers. */
  note(key: RowKey, text: string, fails = false): void {
    const samples = this.#samples(key)
    samples.notes.add(text)
    if (fails) samples.failed = true
  }

  /** A row that prints with no numbers and the reason, e.g. "not available yet". */
  unavailable(key: RowKey, why: string): void {
    const samples = this.#samples(key)
    samples.notes.add(why)
    samples.unavailable = true
  }

  /** The samples so far of a row (for rows derived from others). */
  samplesOf(key: RowKey): { values: readonly number[]; baselines: readonly number[] } | undefined {
    return this.#rows.get(idOf(key))
  }

  rows(): Row[] {
    return [...this.#rows.values()].filter((s) => s.values.length > 0 || s.unavailable).map(toRow)
  }

  #samples(key: RowKey): Samples {
    const id = idOf(key)
    let samples = this.#rows.get(id)
    if (samples === undefined) {
      samples = { key, values: [], baselines: [], notes: new Set(), failed: false, unavailable: false }
      this.#rows.set(id, samples)
    }
    return samples
  }
}

const idOf = (k: RowKey): string => [k.family, k.workload, k.device, k.depth ?? '', k.executor].join('|')

function toRow(s: Samples): Row {
  const row: Row = { ...s.key }
  if (s.notes.size > 0) row.note = [...s.notes].join('; ')
  if (s.values.length === 0) return row
  row.value = summarize(s.values)
  if (s.baselines.length === s.values.length) {
    row.baseline = summarize(s.baselines)
    row.ratio = summarize(s.values.map((v, i) => v / s.baselines[i]!))
  }
  const t = s.key.target
  if (t !== undefined) {
    const measured = t.on === 'ratio' ? row.ratio?.median : row.value?.median
    const met = measured !== undefined && (t.op === '>=' ? measured >= t.limit : measured <= t.limit)
    row.verdict = met && !s.failed ? 'PASS' : 'MISS'
  }
  return row
}
