// bench/journal-cost.ts: what journaling costs (issue: event sourcing). The same workload on
// memory devices with the journal off, in memory, and to a JSON Lines file: 4 KiB origin
// writes at queue depth 16, half first touches of a chunk (a copy and a commit each), half
// rewrites of copied chunks. Prints writes per second and the ratio to "off".
//   npx tsx bench/journal-cost.ts [writes]
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { MemoryDevice, openOrigin } from '../index.js'

const WRITES = Number(process.argv[2] ?? 20000)
const CHUNK = 4096
const DEPTH = 16

async function run(journal: { path?: string; payloads?: boolean } | false): Promise<number> {
  const origin = await openOrigin(new MemoryDevice(WRITES * CHUNK), { journal })
  await origin.createSnapshot(new MemoryDevice((WRITES + WRITES / 256 + 8) * CHUNK), { chunkSize: CHUNK })
  const data = new Uint8Array(CHUNK).fill(7)
  const start = process.hrtime.bigint()
  let next = 0
  const worker = async () => {
    for (let i = next++; i < WRITES; i = next++) {
      const chunk = i % 2 === 0 ? i : i - 1 // every other write rewrites the chunk just copied
      await origin.write(chunk * CHUNK, data)
    }
  }
  await Promise.all(Array.from({ length: DEPTH }, worker))
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  await origin.close()
  return WRITES / seconds
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'snapcow-journal-'))
try {
  const off = await run(false)
  const rows: Array<[string, number]> = [
    ['off', off],
    ['in memory', await run({})],
    ['in memory + payloads', await run({ payloads: true })],
    ['file', await run({ path: path.join(dir, 'a.jsonl') })],
    ['file + payloads', await run({ path: path.join(dir, 'b.jsonl'), payloads: true })],
  ]
  console.log(`journal cost: ${WRITES} origin writes of 4 KiB, queue depth ${DEPTH}, half first touches`)
  console.log('| journal | writes/s | ratio to off |\n| --- | --- | --- |')
  for (const [name, rate] of rows) console.log(`| ${name} | ${Math.round(rate)} | ${(rate / off).toFixed(2)} |`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
