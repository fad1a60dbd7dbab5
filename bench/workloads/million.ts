// bench/workloads/million.ts: a persistent store of many exceptions (1,000,000 in a full run),
// made quickly by writing its header and metadata areas directly with the io/cow-format codec
// (old chunks a shuffled permutation, so the table is probed honestly). Times
// origin.loadSnapshot(cow) against reading the same header and areas raw, one read per area,
// sequentially awaited as the loader does; and the heap (V8 heap + ArrayBuffers, after
// global.gc) per completed exception once a few first writes have also completed and the
// origin is quiet, which must leave no live chunk machine.
import type { BlockDevice } from '../../index.js'
import { asChunkSectors, cowGeometry } from '../../index.js'
import { encodeHeaderChunk } from '../../io/cow-format/header.js'
import { writeRecord } from '../../io/cow-format/record-io.js'
import type { BenchContext } from '../context.js'
import { inTurn } from '../context.js'
import { liveChunkMachines, openWith } from '../executor.js'
import { runOps, shuffled } from '../harness.js'
import { rowKey, W } from '../targets.js'

const g = cowGeometry(asChunkSectors(8)) // 4 KiB chunks, 256 records per area

/** Writes a valid store holding `olds[i] → data chunk i` for every i. */
async function buildStore(cow: BlockDevice, olds: readonly number[]): Promise<void> {
  await cow.write(0, encodeHeaderChunk(g.chunkBytes, { valid: true, chunkSectors: g.chunkSectors }))
  const area = new Uint8Array(g.chunkBytes)
  const view = new DataView(area.buffer)
  const E = g.exceptionsPerArea
  for (let a = 0; a <= Math.floor(olds.length / E); a++) { // the last area is not full: it ends the table
    area.fill(0)
    const first = a * E
    for (let s = 0; s < E && first + s < olds.length; s++) writeRecord(view, s, olds[first + s]!, g.areaLocation(a) + 1 + s)
    await cow.write(g.areaLocation(a) * g.chunkBytes, area)
  }
}

/** Reads the header sector and every area the loader reads, one awaited read at a time. */
async function rawMetadataRead(cow: BlockDevice, exceptions: number): Promise<number> {
  const start = performance.now()
  await cow.read(0, new Uint8Array(512))
  for (let a = 0; a <= Math.floor(exceptions / g.exceptionsPerArea); a++) {
    await cow.read(g.areaLocation(a) * g.chunkBytes, new Uint8Array(g.chunkBytes))
  }
  return performance.now() - start
}

/**
 * V8 heap plus ArrayBuffer memory (the completed table is a typed array) after full
 * collections; a pause between them lets freed ArrayBuffers (e.g. an earlier run's 4 GiB
 * MemoryDevice) actually leave the count, which would otherwise drop mid-measurement.
 */
async function settledHeap(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

export async function millionWorkloads(ctx: BenchContext): Promise<void> {
  const n = ctx.sizes.exceptions
  const extra = ctx.quick ? 64 : 1024 // first writes after the load, to chunks the store lacks
  const olds = shuffled(n, 7)
  const cowChunks = 1 + (Math.ceil((n + extra) / g.exceptionsPerArea) + 1) * g.stride
  const gc = (globalThis as { gc?: () => void }).gc
  for (const kind of ctx.deviceKinds) {
    for (const executor of ctx.executors) {
      const at = { device: kind, executor: executor.name }
      const loadKey = rowKey('million', W.load, { ...at, unit: 'ms', baselineName: 'raw' })
      const heapKey = rowKey('million', W.heap, { ...at, unit: 'B' })
      const origin0 = await ctx.devices.make(kind, (n + extra) * g.chunkBytes, { prefault: false })
      const cow = await ctx.devices.make(kind, cowChunks * g.chunkBytes, { prefault: false })
      try {
        for (let rep = 0; rep < ctx.reps; rep++) {
          ctx.log(`million: ${n} exceptions, ${kind}, ${executor.name}, repetition ${rep + 1}/${ctx.reps}`)
          await buildStore(cow, olds) // again each time: the writes below append to it
          const origin = await openWith(origin0, executor)
          const before = gc === undefined ? 0 : await settledHeap(gc)
          const { raw, snap: load } = await inTurn(rep, () => rawMetadataRead(cow, n), async () => {
            const start = performance.now()
            await origin.loadSnapshot(cow)
            return performance.now() - start
          })
          const data = new Uint8Array(g.chunkBytes).fill(4)
          await runOps(extra, 32, (i) => origin.write((n + i) * g.chunkBytes, data))
          const bytes = gc === undefined ? 0 : (await settledHeap(gc) - before) / (n + extra)
          const live = liveChunkMachines(origin)
          ctx.rows.add(loadKey, load, raw)
          if (gc !== undefined) ctx.rows.add(heapKey, bytes)
          ctx.rows.note(heapKey, `live chunk machines once quiet: ${live ?? 'not observable'}`, live !== undefined && live > 0)
          await origin.close()
        }
        ctx.rows.note(loadKey, `${n} exceptions; raw = header + ${Math.floor(n / g.exceptionsPerArea) + 1} areas, one read each, sequentially awaited`)
        ctx.rows.note(heapKey, `${n} loaded + ${extra} written exceptions`)
        if (gc === undefined) ctx.rows.unavailable(heapKey, 'needs node --expose-gc (npm run bench passes it)')
      } finally {
        await ctx.devices.release(origin0, cow)
      }
    }
  }
}
