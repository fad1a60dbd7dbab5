// bench/workloads/sequential.ts: 1 MiB sequential origin reads and first-touch writes with one
// persistent snapshot (a write spans 256 chunks, each copied first). Raw: the same 1 MiB
// requests to the origin's device. MiB/s.
import type { BlockDevice } from '../../index.js'
import type { BenchContext } from '../context.js'
import { inTurn } from '../context.js'
import { openWith } from '../executor.js'
import { buffers, cowBytesFor, prefill, repeatedPass, runOps } from '../harness.js'
import { rowKey, W } from '../targets.js'

const MIB = 1 << 20
const CHUNK = 4096

export async function sequentialWorkloads(ctx: BenchContext): Promise<void> {
  const count = ctx.sizes.seqMiB
  for (const kind of ctx.deviceKinds) {
    for (const executor of ctx.executors) {
      for (const depth of ctx.depths) {
        for (let rep = 0; rep < ctx.reps; rep++) {
          ctx.log(`sequential: ${kind}, ${executor.name}, QD ${depth}, repetition ${rep + 1}/${ctx.reps}`)
          const device = await ctx.devices.make(kind, count * MIB)
          const cow = await ctx.devices.make(kind, cowBytesFor((count * MIB) / CHUNK))
          try {
            await prefill(device, count * MIB)
            const bufs = buffers(depth, MIB)
            const data = new Uint8Array(MIB).fill(3)
            const read = (t: BlockDevice) => runOps(count, depth, (i, w) => t.read(i * MIB, bufs[w]!))
            const write = (t: BlockDevice) => runOps(count, depth, (i) => t.write(i * MIB, data))
            const rawWrite = await repeatedPass(() => write(device)) // before the origin opens: nothing under a snapshot
            const origin = await openWith(device, executor)
            await origin.createSnapshot(cow, { chunkSize: CHUNK })
            const key = (w: string) => rowKey('sequential', w, { device: kind, depth, executor: executor.name, unit: 'MiB/s', baselineName: 'raw' })
            const reads = await inTurn(rep, () => repeatedPass(() => read(device)), () => repeatedPass(() => read(origin)))
            ctx.rows.add(key(W.seqRead), count / reads.snap, count / reads.raw)
            ctx.rows.add(key(W.seqWrite), count / await write(origin), count / rawWrite)
            await origin.close()
          } finally {
            await ctx.devices.release(device, cow)
          }
        }
      }
    }
  }
}
