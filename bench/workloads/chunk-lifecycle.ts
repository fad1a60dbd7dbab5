// bench/workloads/chunk-lifecycle.ts: what one chunk lifecycle costs under each runtime, no
// I/O: start a chunk machine, send origin-write (with a COW chunk), copy-done ok, commit-done
// ok with 0 readers, check it reached Completed, stop it. µs per lifecycle.
// XState: createActor(chunkMachine). Compiled: machines/compiled-runtime.ts's compiledRuntime()
// (the ChunkRun seam the engine uses).
import { createActor } from 'xstate'
import { asNewChunk, asOldChunk, chunkMachine, compiledRuntime } from '../../index.js'
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

/** The compiled runtime's lifecycle, through the same seam the engine uses. */
function compiledLifecycle(): Lifecycle {
  const newRun = compiledRuntime()
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
  const runtimes: Array<[string, Lifecycle, number]> = [
    ['compiled', compiledLifecycle(), ctx.sizes.lifecyclesCompiled],
    ['xstate', xstateLifecycle(), ctx.sizes.lifecyclesXState],
  ]
  for (const [name, lifecycle, count] of runtimes) {
    const key = rowKey('lifecycle', W.lifecycle, { executor: name, unit: 'µs' })
    ctx.log(`chunk lifecycle: ${name}, ${count} lifecycles × ${ctx.reps}`)
    time(lifecycle, Math.max(1, Math.floor(count / 5))) // warm up the JIT
    for (let rep = 0; rep < ctx.reps; rep++) ctx.rows.add(key, time(lifecycle, count))
    ctx.rows.note(key, `${count} lifecycles per repetition`)
  }
}
