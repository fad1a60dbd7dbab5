// bench/targets.ts: issue 10 item 7's goals, each next to the row it judges. All but the
// FileDevice one are for MemoryDevice at queue depth 32, as a ratio to the raw device.
import type { RowKey, Target } from './rows.js'

export const W = {
  originRead: 'origin read 4 KiB',
  remappedRead: 'snapshot read 4 KiB, remapped (from the COW)',
  unremappedRead: 'snapshot read 4 KiB, unremapped (through to origin)',
  firstWrite1P: 'origin first write 4 KiB, 1 persistent snapshot',
  firstWrite1T: 'origin first write 4 KiB, 1 transient snapshot',
  firstWrite8P: 'origin first write 4 KiB, 8 persistent snapshots',
  eightOverOne: 'first write: 8 persistent ÷ 1 persistent (ratio of ratios)',
  rewrite: 'origin rewrite 4 KiB (chunk already copied)',
  snapFirstWrite: 'snapshot write 4 KiB, first touch',
  snapRewrite: 'snapshot write 4 KiB, rewrite',
  seqRead: 'origin sequential read 1 MiB, 1 snapshot',
  seqWrite: 'origin sequential write 1 MiB, 1 snapshot, first touch',
  lifecycle: 'chunk lifecycle (None → Completed)',
  heap: 'heap per completed exception',
  load: 'load time of the store vs raw metadata read',
  merge: 'merge throughput',
  mergeP50: 'origin read p50 during merge (raw: idle)',
  mergeP99: 'origin read p99 during merge (raw: idle)',
} as const

const ratioAtLeast = (limit: number): Target => ({ on: 'ratio', op: '>=', limit })

/** The target of a row, if it has one. */
export function targetFor(workload: string, device: string, depth?: number, executor?: string): Target | undefined {
  if (workload === W.lifecycle) return executor === 'compiled' ? { on: 'value', op: '<=', limit: 1 } : undefined
  if (workload === W.heap) return { on: 'value', op: '<=', limit: 17 }
  if (workload === W.load) return { on: 'ratio', op: '<=', limit: 2 }
  if (depth !== 32) return undefined
  if (device === 'file') return workload === W.firstWrite1P ? ratioAtLeast(0.25) : undefined
  if (device !== 'memory') return undefined
  switch (workload) {
    case W.originRead: return ratioAtLeast(0.9)
    case W.remappedRead: return ratioAtLeast(0.85)
    case W.rewrite: return ratioAtLeast(0.9)
    case W.firstWrite1P: return ratioAtLeast(0.2)
    case W.eightOverOne: return { on: 'value', op: '>=', limit: 0.5 }
    default: return undefined
  }
}

/** How a target reads in the table: "≥ 0.9×raw", "≤ 1 µs". */
export function targetText(t: Target, unit: string, baselineName = 'raw'): string {
  const op = t.op === '>=' ? '≥' : '≤'
  return t.on === 'ratio' ? `${op} ${t.limit}×${baselineName}` : `${op} ${t.limit} ${unit}`
}

/** A row's key with its target filled in. */
export function rowKey(family: string, workload: string, at: { device?: string; depth?: number; executor?: string; unit: string; baselineName?: string }): RowKey {
  const device = at.device ?? '-'
  const executor = at.executor ?? '-'
  const key: RowKey = { family, workload, device, executor, unit: at.unit }
  if (at.depth !== undefined) key.depth = at.depth
  if (at.baselineName !== undefined) key.baselineName = at.baselineName
  const target = targetFor(workload, device, at.depth, executor)
  if (target !== undefined) key.target = target
  return key
}
