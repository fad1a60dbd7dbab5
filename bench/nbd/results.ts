// bench/nbd/results.ts: the measurements of a run, per system, workload, queue depth and
// repetition, turned into rows: each system against the raw export (nbdkit-file) of the same
// repetition, latency percentiles beside it, and the targets (snapcow ÷ a peer).
import { Collector } from '../rows.js'
import type { Row, RowKey, Target } from '../rows.js'
import type { Summary } from '../stats.js'
import { summarize } from '../stats.js'
import type { Measured } from './fio.js'
import type { SystemName } from './servers.js'
import { NW } from './workloads.js'

export const RAW: SystemName = 'nbdkit-file'
/** The exception table's estimate for the RSS target: 16 bytes per exception. */
export const TABLE_BYTES_PER_EXCEPTION = 16

export interface NbdRow extends Row {
  p50us?: Summary
  p99us?: Summary
}

const isMiB = (workload: string): boolean => !workload.startsWith('rand')
const unitOf = (workload: string): string => (isMiB(workload) ? 'MB/s' : 'ops/s')
const valueOf = (workload: string, m: Measured): number => (isMiB(workload) ? m.MBps : m.iops)
const noDepth = (workload: string): boolean => workload.startsWith('nbdcopy')

interface Goal { workload: string; depth: number; peer: SystemName; target: Target }
const atLeast = (limit: number): Target => ({ on: 'ratio', op: '>=', limit })
/** The targets: first touch at QD32; rewrites and copied reads at both depths. */
const GOALS: readonly Goal[] = [
  { workload: NW.firstTouch, depth: 32, peer: 'nbdkit-cow-4k', target: atLeast(0.6) },
  { workload: NW.firstTouch, depth: 32, peer: 'qemu-qcow2-4k', target: atLeast(1.0) },
  ...[1, 32].map((depth) => ({ workload: NW.rewrite, depth, peer: 'nbdkit-cow-4k' as const, target: atLeast(0.8) })),
  ...[1, 32].map((depth) => ({ workload: NW.copiedRead, depth, peer: RAW, target: atLeast(0.6) })),
]
export const RSS_WORKLOAD = 'server VmHWM after the QD32 first touch'
const RSS_PEER: SystemName = 'qemu-qcow2-4k'

export class NbdResults {
  /** key → measurement per repetition */
  readonly #samples = new Map<string, Array<Measured | undefined>>()
  readonly #hwm = new Map<SystemName, number[]>()
  readonly #order: string[] = []

  record(system: SystemName, workload: string, depth: number | undefined, rep: number, m: Measured): void {
    const key = `${system}|${workload}|${depth ?? ''}`
    let list = this.#samples.get(key)
    if (list === undefined) { list = []; this.#samples.set(key, list); this.#order.push(key) }
    list[rep] = m
  }

  /** VmHWM of one repetition (a session run again replaces its value). */
  recordHwm(system: SystemName, rep: number, kib: number): void {
    const list = this.#hwm.get(system) ?? []
    list[rep] = kib
    this.#hwm.set(system, list)
  }

  /** Throughput rows (one per system, workload, depth), then target rows, then RSS rows. */
  rows(exceptions: number): NbdRow[] {
    const collector = new Collector()
    const latency = new Map<string, { p50: number[]; p99: number[] }>()
    const sorted = [...this.#order].sort((a, b) => this.#rank(a) - this.#rank(b))
    for (const id of sorted) {
      const [system, workload, depthText] = id.split('|') as [SystemName, string, string]
      const depth = depthText === '' ? undefined : Number(depthText)
      const raw = system === RAW ? undefined : this.#samples.get(`${RAW}|${workload}|${depthText}`)
      const key = this.#key('nbd', workload, system, depth, raw !== undefined ? RAW : undefined)
      const lat = { p50: [] as number[], p99: [] as number[] }
      this.#samples.get(id)!.forEach((m, rep) => {
        if (m === undefined) return
        const base = raw?.[rep]
        collector.add(key, valueOf(workload, m), base === undefined ? undefined : valueOf(workload, base))
        if (m.p50us !== undefined) lat.p50.push(m.p50us)
        if (m.p99us !== undefined) lat.p99.push(m.p99us)
      })
      latency.set(`${system}|${workload}|${depth ?? ''}`, lat)
    }
    for (const goal of GOALS) {
      const mine = this.#samples.get(`snapcow|${goal.workload}|${goal.depth}`)
      const theirs = this.#samples.get(`${goal.peer}|${goal.workload}|${goal.depth}`)
      const key = { ...this.#key('nbd-target', `${goal.workload}: snapcow ÷ ${goal.peer}`, 'snapcow', goal.depth, goal.peer, unitOf(goal.workload)), target: goal.target }
      if (mine === undefined || theirs === undefined) { collector.unavailable(key, `${mine === undefined ? 'snapcow' : goal.peer} not measured`); continue }
      mine.forEach((m, rep) => {
        const t = theirs[rep]
        if (m !== undefined && t !== undefined) collector.add(key, valueOf(goal.workload, m), valueOf(goal.workload, t))
      })
    }
    const rows: NbdRow[] = collector.rows()
    for (const row of rows) {
      const lat = latency.get(`${row.device}|${row.workload}|${row.depth ?? ''}`)
      if (row.family !== 'nbd' || lat === undefined) continue
      if (lat.p50.length > 0) row.p50us = summarize(lat.p50)
      if (lat.p99.length > 0) row.p99us = summarize(lat.p99)
    }
    return [...rows, ...this.#rssRows(exceptions)]
  }

  /** VmHWM per system (MiB), and snapcow's against 2× qemu-nbd's plus the exception table. */
  #rssRows(exceptions: number): NbdRow[] {
    const collector = new Collector()
    for (const [system, kibs] of this.#hwm) kibs.forEach((kib) => collector.add(this.#key('nbd-rss', RSS_WORKLOAD, system, 32, undefined, 'MiB'), kib / 1024))
    const mine = this.#hwm.get('snapcow')
    const peer = this.#hwm.get(RSS_PEER)
    const key: RowKey = { ...this.#key('nbd-rss', `${RSS_WORKLOAD} ÷ (2× ${RSS_PEER} + ${TABLE_BYTES_PER_EXCEPTION} B × ${exceptions} exceptions)`, 'snapcow', 32, `2×${RSS_PEER}+table`, 'MiB'),
      target: { on: 'ratio', op: '<=', limit: 1 } }
    if (mine === undefined || peer === undefined) collector.unavailable(key, `${mine === undefined ? 'snapcow' : RSS_PEER} not measured`)
    else mine.forEach((kib, i) => {
      const p = peer[i]
      if (p !== undefined) collector.add(key, kib / 1024, (2 * p * 1024 + TABLE_BYTES_PER_EXCEPTION * exceptions) / 2 ** 20)
    })
    return collector.rows()
  }

  #key(family: string, workload: string, system: string, depth: number | undefined, baselineName: string | undefined, unit = unitOf(workload)): RowKey {
    const key: RowKey = { family, workload, device: system, executor: '-', unit }
    if (depth !== undefined && !noDepth(workload)) key.depth = depth
    if (baselineName !== undefined) key.baselineName = baselineName
    return key
  }

  /** Table order: workload as run, then queue depth, then system as listed. */
  #rank(id: string): number {
    const [system, workload, depth] = id.split('|')
    const w = Object.values(NW).indexOf(workload as never)
    return w * 1e6 + Number(depth || 0) * 1e3 + SYSTEM_ORDER.indexOf(system as SystemName)
  }
}

const SYSTEM_ORDER: SystemName[] = ['snapcow', 'snapcow-origin', 'nbdkit-file', 'nbdkit-cow-4k', 'qemu-qcow2-4k', 'qemu-qcow2-64k']
