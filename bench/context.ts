// bench/context.ts: what run.ts hands every workload family: sizes (full or --quick),
// repetitions, device kinds, queue depths, executors, the devices factory and the collector.
import type { Executor } from './executor.js'
import type { DeviceKind, Devices } from './harness.js'
import type { Collector } from './rows.js'

export interface Sizes {
  /** 4 KiB reads per measurement (and the chunks remapped for them). */
  readOps: number
  /** 4 KiB writes per measurement (first writes: each a copy and a commit). */
  writeOps: number
  /** MiB per 1 MiB sequential measurement. */
  seqMiB: number
  lifecyclesCompiled: number
  lifecyclesXState: number
  /** Exceptions in the store of the heap and load-time workload. */
  exceptions: number
  /** Exceptions merged per merge measurement. */
  mergeChunks: number
  /** Raw reads timed for the idle latency baseline. */
  latencyReads: number
  journalWrites: number
}

export const FULL: Sizes = {
  readOps: 8192, writeOps: 2048, seqMiB: 16, lifecyclesCompiled: 1_000_000, lifecyclesXState: 20_000,
  exceptions: 1_000_000, mergeChunks: 4096, latencyReads: 2000, journalWrites: 2048,
}

export const QUICK: Sizes = {
  readOps: 512, writeOps: 256, seqMiB: 8, lifecyclesCompiled: 50_000, lifecyclesXState: 1000,
  exceptions: 20_000, mergeChunks: 512, latencyReads: 500, journalWrites: 512,
}

export interface BenchContext {
  quick: boolean
  reps: number
  sizes: Sizes
  deviceKinds: readonly DeviceKind[]
  depths: readonly number[]
  executors: readonly Executor[]
  devices: Devices
  rows: Collector
  /** Progress, to stderr. */
  log(line: string): void
}

/** Runs `fn` with raw first on even repetitions and snapcow first on odd ones (order bias). */
export async function inTurn<T>(rep: number, raw: () => Promise<T>, snap: () => Promise<T>): Promise<{ raw: T; snap: T }> {
  if (rep % 2 === 0) {
    const r = await raw()
    return { raw: r, snap: await snap() }
  }
  const s = await snap()
  return { raw: await raw(), snap: s }
}
