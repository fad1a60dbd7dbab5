// bench/table.ts: the printed form of a run: machine facts, then one Markdown table row per
// measurement (snapcow median [min..max], its baseline, the ratio, the target, PASS/MISS).
import type { MachineFacts } from './machine.js'
import type { Row } from './rows.js'
import type { Summary } from './stats.js'
import { targetText } from './targets.js'

/** Three significant figures, with k/M for large values. */
export function fmt(n: number): string {
  const a = Math.abs(n)
  if (a >= 1e7) return `${(n / 1e6).toFixed(1)}M`
  if (a >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (a >= 1e4) return `${(n / 1e3).toFixed(0)}k`
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k`
  if (a >= 100) return n.toFixed(0)
  if (a >= 10) return n.toFixed(1)
  return n.toFixed(2)
}

/** Ratios: two decimals, or two significant digits below 0.1 (a first write is ~0.003× raw). */
const ratioText = (r: number): string => (Math.abs(r) >= 0.1 ? r.toFixed(2) : r.toPrecision(2))
const spread = (s: Summary): string => (s.n > 1 ? ` (${fmt(s.min)}..${fmt(s.max)})` : '')
const DEVICE: Record<string, string> = { memory: 'memory', file: 'file (tmpfs)' }

export function renderTable(facts: MachineFacts, settings: string[], rows: readonly Row[]): string {
  const lines = [
    `snapcow benchmark: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, node ${facts.node}`,
    `kernel: ${facts.kernel}`,
    `load average at start: ${facts.loadAverage}; tmpfs: ${facts.tmpfs}`,
    ...settings,
    'ratio = snapcow ÷ baseline, per repetition: higher is better for ops/s, MiB/s and chunks/s; lower for µs and ms.',
    '',
    '| workload | device | QD | executor | snapcow median (min..max) | baseline median | ratio median (min..max) | target | result | note |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const r of rows) {
    const value = r.value === undefined ? '—' : `${fmt(r.value.median)} ${r.unit}${spread(r.value)}`
    const base = r.baseline === undefined ? '' : `${r.baselineName ?? ''} ${fmt(r.baseline.median)}`
    const ratio = r.ratio === undefined ? '' : `${ratioText(r.ratio.median)}${r.ratio.n > 1 ? ` (${ratioText(r.ratio.min)}..${ratioText(r.ratio.max)})` : ''}`
    const target = r.target === undefined ? '' : targetText(r.target, r.unit, r.baselineName)
    const result = r.value === undefined ? (r.target === undefined ? '' : 'n/a') : r.verdict ?? ''
    lines.push(`| ${[r.workload, DEVICE[r.device] ?? r.device, r.depth ?? '', r.executor, value, base, ratio, target, result, r.note ?? ''].join(' | ')} |`)
  }
  const judged = rows.filter((r) => r.verdict !== undefined)
  lines.push('', `targets: ${judged.filter((r) => r.verdict === 'PASS').length} PASS, ${judged.filter((r) => r.verdict === 'MISS').length} MISS (reported, never enforced)`)
  return lines.join('\n')
}
