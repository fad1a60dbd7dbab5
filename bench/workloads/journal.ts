// bench/workloads/journal.ts: what journaling costs (the idea of bench/journal-cost.ts): 4 KiB
// origin writes on MemoryDevice, half first touches of a chunk (a copy and a commit each), half
// rewrites of the chunk just copied, with the journal off, in memory, and to a JSON Lines file
// on tmpfs, each with and without payloads. Baseline: the journal off, in the same repetition.
import path from 'node:path'
import { rm } from 'node:fs/promises'
import { MemoryDevice } from '../../index.js'
import type { OpenOriginOptions } from '../../index.js'
import type { BenchContext } from '../context.js'
import type { Executor } from '../executor.js'
import { openWith } from '../executor.js'
import { cowBytesFor, runOps } from '../harness.js'
import { rowKey } from '../targets.js'

const CHUNK = 4096

type Mode = [name: string, journal: (file: string) => OpenOriginOptions['journal']]
const MODES: Mode[] = [
  ['off', () => false],
  ['in memory', () => ({})],
  ['in memory + payloads', () => ({ payloads: true })],
  ['file', (file) => ({ path: file })],
  ['file + payloads', (file) => ({ path: file, payloads: true })],
]

async function writesPerSecond(ctx: BenchContext, executor: Executor, depth: number, journal: OpenOriginOptions['journal']): Promise<number> {
  const n = ctx.sizes.journalWrites
  const origin = await openWith(new MemoryDevice(n * CHUNK), executor, { journal })
  await origin.createSnapshot(new MemoryDevice(cowBytesFor(n)), { chunkSize: CHUNK })
  const data = new Uint8Array(CHUNK).fill(6)
  const seconds = await runOps(n, depth, (i) => origin.write((i % 2 === 0 ? i : i - 1) * CHUNK, data))
  await origin.close()
  return n / seconds
}

export async function journalWorkloads(ctx: BenchContext): Promise<void> {
  for (const executor of ctx.executors) {
    for (const depth of ctx.depths) {
      for (let rep = 0; rep < ctx.reps; rep++) {
        ctx.log(`journal: ${executor.name}, QD ${depth}, repetition ${rep + 1}/${ctx.reps}`)
        const rates: number[] = []
        for (const [name, journal] of MODES) {
          const file = path.join(ctx.devices.dir, `journal-${process.pid}-${rep}.jsonl`)
          try {
            rates.push(await writesPerSecond(ctx, executor, depth, journal(file)))
          } finally {
            await rm(file, { force: true })
          }
          const key = rowKey('journal', `journal ${name}, origin writes 4 KiB, half first touch`,
            { device: 'memory', depth, executor: executor.name, unit: 'ops/s', ...(name === 'off' ? {} : { baselineName: 'journal off' }) })
          ctx.rows.add(key, rates.at(-1)!, name === 'off' ? undefined : rates[0])
        }
      }
    }
  }
}
