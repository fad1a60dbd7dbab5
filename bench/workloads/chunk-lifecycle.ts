// bench/workloads/chunk-lifecycle.ts: what one chunk lifecycle costs under each runtime, no
// I/O: start a chunk machine, send origin-write (with a COW chunk), copy-done ok, commit-done
// ok with 0 readers, check it reached Completed, stop it. µs per lifecycle.
// XState: createActor(chunkMachine). Compiled: machines/compiled-runtime.ts's compiledRuntime()
// (the ChunkRun seam), picked up only if that file exists; otherwise the row says so.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createActor } from 'xstate'
import { asNewChunk, asOldChunk, chunkMachine } from '../../index.js'
import type { ChunkCommand, ChunkEvent, ChunkInput } from '../../index.js'
import type { BenchContext } from '../context.js'
import { rowKey, W } from '../targets.js'

/** One lifecycle: returns the state it ended in. */
type Lifecycle = (i: number) => string

const bio = { id: 1 }
const copyDone: ChunkEvent = { type: 'copy-done', ok: true }
const commitDone: ChunkEvent = { type: 'commit-done', ok: true, readers: 0 }
const input = (i: number): ChunkInput => ({ snapshotId: 's1', oldChunk: asOldChunk(i) })

function xstateLifecycle(): Lifecycle {
  const out: ChunkCommand[] = []
  return (i) => {
    out.length = 0
    const actor = createActor(chunkMachine, { input: input(i) })
    actor.on('*', (command) => { out.push(command) })
    actor.start()
    actor.send({ type: 'origin-write', bio, newChunk: asNewChunk(i + 2) })
    actor.send(copyDone)
    actor.send(commitDone)
    const state = actor.getSnapshot().value
    actor.stop()
    return typeof state === 'string' ? state : JSON.stringify(state)
  }
}

/** The seam compiled-runtime.ts offers (see machines/chunk-run.ts once merged). */
interface ChunkRunLike {
  readonly state: string
  send(event: ChunkEvent, out: ChunkCommand[]): void
  stop(): void
}

const COMPILED = new URL('../../machines/compiled-runtime.ts', import.meta.url)

/** The compiled runtime's lifecycle, or why there is none. */
async function compiledLifecycle(): Promise<Lifecycle | string> {
  if (!existsSync(fileURLToPath(COMPILED))) return 'not available yet: machines/compiled-runtime.ts does not exist'
  const module = await import(COMPILED.href.replace(/\.ts$/, '.js')) as { compiledRuntime?: unknown }
  if (typeof module.compiledRuntime !== 'function') {
    return 'machines/compiled-runtime.ts has no compiledRuntime() export: adapt bench/workloads/chunk-lifecycle.ts'
  }
  const newRun = (module.compiledRuntime as () => (input: ChunkInput) => ChunkRunLike)()
  const out: ChunkCommand[] = []
  return (i) => {
    out.length = 0
    const run = newRun(input(i))
    run.send({ type: 'origin-write', bio, newChunk: asNewChunk(i + 2) }, out)
    run.send(copyDone, out)
    run.send(commitDone, out)
    const state = run.state
    run.stop()
    return state
  }
}

/** µs per lifecycle over `count` lifecycles; throws if one does not end Completed. */
function time(lifecycle: Lifecycle, count: number): number {
  const start = performance.now()
  for (let i = 0; i < count; i++) {
    const state = lifecycle(i)
    if (state !== 'Completed') throw new Error(`chunk lifecycle ${i} ended in ${state}, not Completed`)
  }
  return ((performance.now() - start) * 1000) / count
}

export async function chunkLifecycleWorkloads(ctx: BenchContext): Promise<void> {
  const runtimes: Array<[string, Lifecycle | string, number]> = [
    ['compiled', await compiledLifecycle(), ctx.sizes.lifecyclesCompiled],
    ['xstate', xstateLifecycle(), ctx.sizes.lifecyclesXState],
  ]
  for (const [name, lifecycle, count] of runtimes) {
    const key = rowKey('lifecycle', W.lifecycle, { executor: name, unit: 'µs' })
    if (typeof lifecycle === 'string') {
      ctx.rows.unavailable(key, lifecycle)
      continue
    }
    ctx.log(`chunk lifecycle: ${name}, ${count} lifecycles × ${ctx.reps}`)
    time(lifecycle, Math.max(1, Math.floor(count / 5))) // warm up the JIT
    for (let rep = 0; rep < ctx.reps; rep++) ctx.rows.add(key, time(lifecycle, count))
    ctx.rows.note(key, `${count} lifecycles per repetition`)
  }
}
