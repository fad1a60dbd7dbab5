// bench/nbd/table.ts: the printed form of an NBD run: settings, the systems, what was
// skipped, one table of every measurement against the raw export, then the targets and RSS.
import type { MachineFacts } from '../machine.js'
import type { Summary } from '../stats.js'
import { fmt } from '../table.js'
import type { NbdRow } from './results.js'
import { RAW } from './results.js'

const ratio = (s: Summary | undefined): string =>
  s === undefined ? '' : `${s.median.toFixed(2)}${s.n > 1 ? ` (${s.min.toFixed(2)}..${s.max.toFixed(2)})` : ''}`
const spread = (s: Summary | undefined, unit = ''): string =>
  s === undefined ? '' : `${fmt(s.median)}${unit}${s.n > 1 ? ` (${fmt(s.min)}..${fmt(s.max)})` : ''}`

export function renderNbdTable(facts: MachineFacts, head: readonly string[], rows: readonly NbdRow[]): string {
  const lines = [
    `snapcow NBD benchmark: ${facts.cpu}, ${facts.cores} cores, ${facts.memoryGiB} GiB, node ${facts.node}`,
    `kernel: ${facts.kernel}; load average at start: ${facts.loadAverage}; tmpfs: ${facts.tmpfs}`,
    ...head,
    '',
    `| workload | QD | system | median (min..max) | ÷ ${RAW} | p50 µs | p99 µs |`,
    '| --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const r of rows.filter((r) => r.family === 'nbd')) {
    lines.push(`| ${r.workload} | ${r.depth ?? ''} | ${r.device} | ${spread(r.value, ` ${r.unit}`)} | ${ratio(r.ratio)} | ${spread(r.p50us)} | ${spread(r.p99us)} |`)
  }
  lines.push('', '| target | QD | snapcow median | peer median | ratio median (min..max) | target | result | note |', '| --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const r of rows.filter((r) => r.target !== undefined)) {
    const op = r.target!.op === '>=' ? '≥' : '≤'
    lines.push(`| ${r.workload} | ${r.depth ?? ''} | ${spread(r.value, ` ${r.unit}`)} | ${r.baselineName} ${spread(r.baseline)} | ${ratio(r.ratio)} | ${op} ${r.target!.limit}× | ${r.verdict ?? 'n/a'} | ${r.note ?? ''} |`)
  }
  lines.push('', '| server | VmHWM MiB after the QD32 first touch |', '| --- | --- |')
  for (const r of rows.filter((r) => r.family === 'nbd-rss' && r.target === undefined)) lines.push(`| ${r.device} | ${spread(r.value)} |`)
  const judged = rows.filter((r) => r.verdict !== undefined)
  lines.push('', `targets: ${judged.filter((r) => r.verdict === 'PASS').length} PASS, ${judged.filter((r) => r.verdict === 'MISS').length} MISS (reported, never enforced)`)
  return lines.join('\n')
}
