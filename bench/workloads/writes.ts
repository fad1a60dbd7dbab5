// bench/workloads/writes.ts: 4 KiB writes at each queue depth. Origin first writes (each the
// first to its chunk: a shuffled list of distinct chunks) with 1 persistent, 1 transient and 8
// persistent snapshots; with one persistent snapshot also origin rewrites of the copied chunks
// and snapshot writes (first touch, then rewrite). Raw: the same offsets written to the device.
import type { BlockDevice, Origin } from '../../index.js'
import type { BenchContext } from '../context.js'
import type { Executor } from '../executor.js'
import { liveChunkMachines, openWith } from '../executor.js'
import type { DeviceKind } from '../harness.js'
import { cowBytesFor, prefill, repeatedPass, runOps, shuffled } from '../harness.js'
import { rowKey, W } from '../targets.js'

const CHUNK = 4096
const VARIANTS = [
  { workload: W.firstWrite1P, snapshots: 1, persistent: true },
  { workload: W.firstWrite1T, snapshots: 1, persistent: false },
  { workload: W.firstWrite8P, snapshots: 8, persistent: true },
] as const

export async function writeWorkloads(ctx: BenchContext): Promise<void> {
  for (const kind of ctx.deviceKinds) {
    for (const executor of ctx.executors) {
      for (const depth of ctx.depths) {
        for (let rep = 0; rep < ctx.reps; rep++) {
          ctx.log(`writes: ${kind}, ${executor.name}, QD ${depth}, repetition ${rep + 1}/${ctx.reps}`)
          for (const variant of VARIANTS) await oneSetup(ctx, kind, executor, depth, variant)
        }
        eightOverOne(ctx, kind, executor.name, depth)
      }
    }
  }
}

/** Chunks [0, n) take the origin writes, [n, 2n) the snapshot writes (one persistent only). */
async function oneSetup(ctx: BenchContext, kind: DeviceKind, executor: Executor, depth: number,
  variant: (typeof VARIANTS)[number]): Promise<void> {
  const n = ctx.sizes.writeOps
  const full = variant === VARIANTS[0]
  const regionChunks = full ? 2 * n : n
  const device = await ctx.devices.make(kind, regionChunks * CHUNK)
  const cows: BlockDevice[] = []
  let origin: Origin | undefined
  try {
    await prefill(device, regionChunks * CHUNK)
    const data = new Uint8Array(CHUNK).fill(2)
    const originChunks = shuffled(n, 5)
    const snapChunks = shuffled(n, 6).map((c) => c + n)
    const writes = (target: BlockDevice, chunks: number[]) => runOps(n, depth, (i) => target.write(chunks[i]! * CHUNK, data))
    const key = (workload: string) => rowKey('writes', workload, { device: kind, depth, executor: executor.name, unit: 'ops/s', baselineName: 'raw' })

    // Raw before the origin opens (overwrites of prefilled chunks, so passes can repeat).
    const raw = [await repeatedPass(() => writes(device, originChunks))]
    if (full) raw.push(await repeatedPass(() => writes(device, snapChunks)))

    origin = await openWith(device, executor)
    for (let s = 0; s < variant.snapshots; s++) {
      const cow = await ctx.devices.make(kind, variant.persistent ? cowBytesFor(regionChunks) : (regionChunks + 8) * CHUNK)
      cows.push(cow)
      await origin.createSnapshot(cow, { chunkSize: CHUNK, persistent: variant.persistent })
    }
    ctx.rows.add(key(variant.workload), n / await writes(origin, originChunks), n / raw[0]!)
    const live = liveChunkMachines(origin)
    ctx.rows.note(key(variant.workload), `live chunk machines once quiet: ${live ?? 'not observable'}`, live !== undefined && live > 0)
    if (!full) return
    ctx.rows.add(key(W.rewrite), n / await repeatedPass(() => writes(origin!, originChunks)), n / raw[0]!)
    const snap = origin.snapshots[0]!
    ctx.rows.add(key(W.snapFirstWrite), n / await writes(snap, snapChunks), n / raw[1]!)
    ctx.rows.add(key(W.snapRewrite), n / await repeatedPass(() => writes(snap, snapChunks)), n / raw[1]!)
  } finally {
    await origin?.close()
    await ctx.devices.release(device, ...cows)
  }
}

/** The 8-snapshot first-write ratio over the 1-snapshot one, repetition by repetition. */
function eightOverOne(ctx: BenchContext, kind: DeviceKind, executor: string, depth: number): void {
  const at = { device: kind, depth, executor, unit: 'ops/s', baselineName: 'raw' }
  const one = ctx.rows.samplesOf(rowKey('writes', W.firstWrite1P, at))
  const eight = ctx.rows.samplesOf(rowKey('writes', W.firstWrite8P, at))
  if (one === undefined || eight === undefined) return
  const key = rowKey('writes', W.eightOverOne, { device: kind, depth, executor, unit: '×' })
  one.values.forEach((v, i) => {
    const r1 = v / one.baselines[i]!
    const r8 = eight.values[i]! / eight.baselines[i]!
    ctx.rows.add(key, r8 / r1)
  })
}
