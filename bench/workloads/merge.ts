// bench/workloads/merge.ts: merging N exceptions back into the origin (chunks/s), and origin
// read latency (p50, p99) while that merge runs. Raw: copying the same N chunks COW → origin
// device one read and one write at a time, then a flush; the latency baseline is the raw
// device's read latency while idle. On MemoryDevice both the merge and the reads complete
// within microtasks, so they interleave; the reader yields an event-loop turn every 1000 reads
// so that it could never starve a merge step that waits for one.
import { setImmediate as nextTurn } from 'node:timers/promises'
import type { BenchContext } from '../context.js'
import { openWith } from '../executor.js'
import { cowBytesFor, prefill, runOps, shuffled } from '../harness.js'
import { percentile } from '../stats.js'
import { rowKey, W } from '../targets.js'

const CHUNK = 4096

export async function mergeWorkloads(ctx: BenchContext): Promise<void> {
  const n = ctx.sizes.mergeChunks
  const chunks = shuffled(n, 8)
  for (const kind of ctx.deviceKinds) {
    for (const executor of ctx.executors) {
      const at = { device: kind, executor: executor.name }
      let fewestReads = Infinity
      for (let rep = 0; rep < ctx.reps; rep++) {
        ctx.log(`merge: ${n} exceptions, ${kind}, ${executor.name}, repetition ${rep + 1}/${ctx.reps}`)
        const device = await ctx.devices.make(kind, n * CHUNK)
        const cow = await ctx.devices.make(kind, cowBytesFor(n))
        try {
          await prefill(device, n * CHUNK)
          const origin = await openWith(device, executor)
          const snap = await origin.createSnapshot(cow, { chunkSize: CHUNK })
          const data = new Uint8Array(CHUNK).fill(5)
          await runOps(n, 32, (i) => origin.write(chunks[i]! * CHUNK, data))

          const buf = new Uint8Array(CHUNK)
          const rawCopy = await runOps(n, 1, async (i) => {
            await cow.read((2 + i) * CHUNK, buf) // roughly where the copies went; the cost is what counts
            await device.write(chunks[i]! * CHUNK, buf)
          }) + await timed(() => device.flush())
          const idle: number[] = []
          const probes = shuffled(n, 9)
          for (let i = 0; i < ctx.sizes.latencyReads; i++) idle.push(await latency(() => device.read(probes[i % n]! * CHUNK, buf)))

          const during: number[] = []
          let merging = true
          const reader = (async () => {
            for (let i = 0; merging; i++) {
              during.push(await latency(() => origin.read(probes[i % n]! * CHUNK, buf)))
              if (i % 1000 === 999) await nextTurn()
            }
          })()
          const mergeSeconds = await timed(() => snap.merge()).finally(() => { merging = false })
          await reader
          await origin.close()

          ctx.rows.add(rowKey('merge', W.merge, { ...at, unit: 'chunks/s', baselineName: 'raw' }), n / mergeSeconds, n / rawCopy)
          const p = (q: number, w: string) => ctx.rows.add(rowKey('merge', w, { ...at, unit: 'µs', baselineName: 'raw' }),
            percentile(during, q), percentile(idle, q))
          p(50, W.mergeP50)
          p(99, W.mergeP99)
          fewestReads = Math.min(fewestReads, during.length)
        } finally {
          await ctx.devices.release(device, cow)
        }
      }
      ctx.rows.note(rowKey('merge', W.merge, { ...at, unit: 'chunks/s', baselineName: 'raw' }), `${n} exceptions, 4 KiB chunks`)
      ctx.rows.note(rowKey('merge', W.mergeP50, { ...at, unit: 'µs', baselineName: 'raw' }), `QD 1, at least ${fewestReads} reads per merge`)
    }
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await fn()
  return (performance.now() - start) / 1000
}

/** µs one call takes. */
async function latency(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await fn()
  return (performance.now() - start) * 1000
}
