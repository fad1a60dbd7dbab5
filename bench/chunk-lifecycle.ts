// bench/chunk-lifecycle.ts: what one chunk lifecycle costs behind the ChunkRun seam (issue 10):
// None → Pending (origin-write with a COW chunk) → committing (copy-done) → Completed
// (commit-done, no readers), then stop. Prints µs per lifecycle, compiled table and XState actor.
//   npx tsx bench/chunk-lifecycle.ts [lifecycles]
import { asNewChunk, asOldChunk } from '../io/units.js'
import type { ChunkCommand, ChunkEvent } from '../machines/chunk.js'
import type { ChunkRuntime } from '../machines/chunk-run.js'
import { xstateRuntime } from '../machines/chunk-run.js'
import { compiledRuntime } from '../machines/compiled-runtime.js'

const N = Number(process.argv[2] ?? 1_000_000)
const bio = { id: 1 }
const copyDone: ChunkEvent = { type: 'copy-done', ok: true }
const commitDone: ChunkEvent = { type: 'commit-done', ok: true, readers: 0 }

/** Runs `count` lifecycles; returns µs per lifecycle and the commands of the last one. */
function lifecycles(runtime: ChunkRuntime, count: number): { us: number; commands: string[] } {
  const out: ChunkCommand[] = []
  let last: string[] = []
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    out.length = 0
    const run = runtime({ snapshotId: 's1', oldChunk: asOldChunk(i) })
    run.send({ type: 'origin-write', bio, newChunk: asNewChunk(i + 1) }, out)
    run.send(copyDone, out)
    run.send(commitDone, out)
    if (run.state !== 'Completed') throw new Error(`lifecycle ${i} ended in ${run.state}`)
    run.stop()
    if (i === count - 1) last = out.map((c) => c.type)
  }
  return { us: Number(process.hrtime.bigint() - start) / 1e3 / count, commands: last }
}

const rows: Array<[string, ChunkRuntime, number]> = [
  ['compiled', compiledRuntime(), N],
  ['xstate', xstateRuntime(), Math.max(1, Math.floor(N / 100))],
]
for (const [name, runtime, count] of rows) {
  lifecycles(runtime, Math.max(1, Math.floor(count / 5))) // warm up (the JIT)
  const { us, commands } = lifecycles(runtime, count)
  console.log(`${name.padEnd(9)} ${us.toFixed(3).padStart(9)} µs/lifecycle  (${count} lifecycles; ${commands.join(', ')})`)
}
