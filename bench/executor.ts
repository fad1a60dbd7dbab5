// bench/executor.ts: the chunk-machine executors openOrigin offers ('compiled', the default,
// and 'xstate'): the engine rows run once under each one asked for.
import { openOrigin } from '../index.js'
import type { BlockDevice, OpenOriginOptions, Origin } from '../index.js'

export interface Executor {
  name: 'compiled' | 'xstate'
  /** Passed through to openOrigin. */
  options: OpenOriginOptions
}

export interface ExecutorChoice {
  executors: Executor[]
  note: string
}

/** The executors to run (`wanted` narrows them, e.g. from `--executor compiled`); an unknown name is refused. */
export function chooseExecutors(wanted: readonly string[] = ['compiled', 'xstate']): ExecutorChoice {
  for (const name of wanted) {
    if (name !== 'compiled' && name !== 'xstate') throw new TypeError(`--executor: unknown executor ${JSON.stringify(name)} (compiled, xstate)`)
  }
  const names = wanted as ReadonlyArray<'compiled' | 'xstate'>
  return { executors: names.map((name) => ({ name, options: { executor: name } })),
    note: `engine rows run under ${names.join(', ')}` }
}

/** openOrigin with the executor's options and any others. */
export const openWith = (device: BlockDevice, executor: Executor, extra: OpenOriginOptions = {}): Promise<Origin> =>
  openOrigin(device, { ...executor.options, ...extra })

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
