// bench/workloads/reads.ts: 4 KiB random reads at each queue depth: the origin (one snapshot
// present), a snapshot's remapped chunks (copied to the COW) and its unremapped ones (read
// through to the origin). Raw: the same offsets read straight from the origin's device.
import type { BlockDevice } from '../../index.js'
import type { BenchContext } from '../context.js'
import { inTurn } from '../context.js'
import { openWith } from '../executor.js'
import type { DeviceKind } from '../harness.js'
import { buffers, cowBytesFor, prefill, repeatedPass, runOps, shuffled } from '../harness.js'
import type { Executor } from '../executor.js'
import { rowKey, W } from '../targets.js'

const CHUNK = 4096

export async function readWorkloads(ctx: BenchContext): Promise<void> {
  for (const kind of ctx.deviceKinds) {
    for (const executor of ctx.executors) {
      for (let rep = 0; rep < ctx.reps; rep++) {
        ctx.log(`reads: ${kind}, ${executor.name}, repetition ${rep + 1}/${ctx.reps}`)
        await oneSetup(ctx, kind, executor, rep)
      }
    }
  }
}

/** Chunks [0, n) are remapped, [n, 2n) are not; origin reads sample the whole 2n. */
async function oneSetup(ctx: BenchContext, kind: DeviceKind, executor: Executor, rep: number): Promise<void> {
  const n = ctx.sizes.readOps
  const device = await ctx.devices.make(kind, 2 * n * CHUNK)
  const cow = await ctx.devices.make(kind, cowBytesFor(n))
  try {
    await prefill(device, 2 * n * CHUNK)
    const origin = await openWith(device, executor)
    const snap = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    const data = new Uint8Array(CHUNK).fill(1)
    const remap = shuffled(n, 1)
    await runOps(n, 32, (i) => origin.write(remap[i]! * CHUNK, data))
    const patterns: Array<[string, BlockDevice, number[]]> = [
      [W.originRead, origin, shuffled(2 * n, 2).slice(0, n)],
      [W.remappedRead, snap, shuffled(n, 3)],
      [W.unremappedRead, snap, shuffled(n, 4).map((c) => c + n)],
    ]
    for (const depth of ctx.depths) {
      const bufs = buffers(depth, CHUNK)
      for (const [workload, volume, chunks] of patterns) {
        const time = (target: BlockDevice) => runOps(n, depth, (i, w) => target.read(chunks[i]! * CHUNK, bufs[w]!))
        const { raw, snap: s } = await inTurn(rep, () => repeatedPass(() => time(device)), () => repeatedPass(() => time(volume)))
        ctx.rows.add(rowKey('reads', workload, { device: kind, depth, executor: executor.name, unit: 'ops/s', baselineName: 'raw' }), n / s, n / raw)
      }
    }
    await origin.close()
  } finally {
    await ctx.devices.release(device, cow)
  }
}
