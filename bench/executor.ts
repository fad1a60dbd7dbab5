// bench/executor.ts: which chunk-machine executors openOrigin offers. The probe: an origin
// that supports `executor` rejects a value it does not know with an error naming `executor`
// (house rule: bad input gets a clear error); one that ignores the option opens fine. Only
// then are 'compiled' and 'xstate' benchmarked separately; otherwise one "default" run.
import { MemoryDevice, openOrigin } from '../index.js'
import type { BlockDevice, OpenOriginOptions, Origin } from '../index.js'

export interface Executor {
  /** 'compiled', 'xstate', or 'default' when openOrigin has no executor option yet. */
  name: string
  /** Passed through to openOrigin. */
  options: Record<string, unknown>
}

export interface ExecutorProbe {
  supported: boolean
  executors: Executor[]
  note: string
}

/** Probes openOrigin; `wanted` narrows the executors when the option exists. */
export async function probeExecutors(wanted: readonly string[] = ['compiled', 'xstate']): Promise<ExecutorProbe> {
  const device = new MemoryDevice(1 << 16)
  let supported = false
  try {
    const origin = await openOrigin(device, { executor: 'no-such-executor' } as unknown as OpenOriginOptions)
    await origin.close()
  } catch (error) {
    supported = error instanceof Error && /executor/.test(error.message)
    if (!supported) throw error
  }
  if (!supported) {
    return { supported, executors: [{ name: 'default', options: {} }],
      note: 'executor option not available yet (openOrigin accepts an unknown executor): engine rows run the default executor' }
  }
  return { supported, executors: wanted.map((name) => ({ name, options: { executor: name } })),
    note: `executor option available: engine rows run under ${wanted.join(', ')}` }
}

/** openOrigin with the executor's options and any others. */
export const openWith = (device: BlockDevice, executor: Executor, extra: OpenOriginOptions = {}): Promise<Origin> =>
  openOrigin(device, { ...executor.options, ...extra } as OpenOriginOptions)

/**
 * Live chunk machines of an origin's snapshots, through the engine's internals (@internal,
 * may change): undefined when they are not reachable.
 */
export function liveChunkMachines(origin: Origin): number | undefined {
  const snapshots = (origin as unknown as { engine?: { snapshots?: unknown } }).engine?.snapshots
  if (!Array.isArray(snapshots)) return undefined
  let live = 0
  for (const s of snapshots as Array<{ live?: unknown }>) {
    if (!(s.live instanceof Map)) return undefined
    live += s.live.size
  }
  return live
}
