// bench/run.ts: `npm run bench [-- --quick] [--json] [--reps N] [--only a,b] [--executor a,b] [--tmpfs DIR]`.
// Runs every workload family in one process and prints the machine facts and one table (or
// JSON). --quick: every workload once at small sizes (CI). Misses are reported, never fatal.
// --nbd: instead, `snapcow serve` against nbdkit and qemu-nbd over NBD (bench/nbd/).
import { mkdtemp, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import type { BenchContext } from './context.js'
import { FULL, QUICK } from './context.js'
import { chooseExecutors } from './executor.js'
import { Devices } from './harness.js'
import { machineFacts } from './machine.js'
import { runNbdBench } from './nbd/run.js'
import { Collector } from './rows.js'
import { renderTable } from './table.js'
import { chunkLifecycleWorkloads } from './workloads/chunk-lifecycle.js'
import { journalWorkloads } from './workloads/journal.js'
import { mergeWorkloads } from './workloads/merge.js'
import { millionWorkloads } from './workloads/million.js'
import { readWorkloads } from './workloads/reads.js'
import { sequentialWorkloads } from './workloads/sequential.js'
import { writeWorkloads } from './workloads/writes.js'

const FAMILIES: Record<string, (ctx: BenchContext) => Promise<void>> = {
  reads: readWorkloads,
  writes: writeWorkloads,
  sequential: sequentialWorkloads,
  lifecycle: chunkLifecycleWorkloads,
  million: millionWorkloads,
  merge: mergeWorkloads,
  journal: journalWorkloads,
}

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    reps: { type: 'string' },
    only: { type: 'string' },
    executor: { type: 'string' },
    tmpfs: { type: 'string' },
    nbd: { type: 'boolean', default: false },
  },
})

const quick = args.quick === true
const reps = args.reps !== undefined ? Number(args.reps) : quick ? 1 : 5
if (!Number.isSafeInteger(reps) || reps < 1) throw new RangeError(`--reps must be a positive integer, got ${args.reps}`)
const only = args.only?.split(',') ?? Object.keys(FAMILIES)
const unknown = only.filter((f) => !(f in FAMILIES))
if (unknown.length > 0) throw new RangeError(`--only: unknown families ${unknown.join(', ')} (known: ${Object.keys(FAMILIES).join(', ')})`)

const started = performance.now()
const tmpfsRoot = args.tmpfs ?? (existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir())
if (args.nbd === true) {
  await runNbdBench({ quick, json: args.json === true, reps: args.reps !== undefined ? reps : quick ? 1 : 3, tmpfsRoot,
    log: (line) => process.stderr.write(`[bench --nbd ${((performance.now() - started) / 1000).toFixed(0)}s] ${line}\n`) })
  process.exit(0)
}
const dir = await mkdtemp(path.join(tmpfsRoot, 'snapcow-bench-'))
const probe = chooseExecutors(args.executor?.split(','))
const devices = new Devices(dir)
const rows = new Collector()
const sizes = quick ? QUICK : FULL
const ctx: BenchContext = {
  quick, reps, sizes, deviceKinds: ['memory', 'file'], depths: [1, 32], executors: probe.executors, devices, rows,
  log: (line) => process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(0)}s] ${line}\n`),
}
const facts = machineFacts(dir)
try {
  for (const family of only) {
    // A full run first runs each family once at quick sizes, unrecorded, so the JIT is warm.
    if (!quick) await FAMILIES[family]!({ ...ctx, reps: 1, sizes: QUICK, rows: new Collector(), log: (l) => ctx.log(`warm-up ${l}`) })
    await FAMILIES[family]!(ctx)
  }
} finally {
  await devices.releaseAll()
  await rm(dir, { recursive: true, force: true })
}
const seconds = (performance.now() - started) / 1000
const settings = [
  `${quick ? 'quick run' : 'full run'}: ${reps} repetition(s), 4 KiB chunks, ${sizes.readOps} reads and ${sizes.writeOps} writes per 4 KiB measurement; ${seconds.toFixed(0)} s`,
  probe.note,
  'the library as shipped (bundled by tsup, no dev transform); every device written once before it is timed',
]
if (args.json === true) {
  console.log(JSON.stringify({ machine: facts, quick, reps, sizes, seconds, executors: probe, rows: rows.rows() }, null, 2))
} else {
  console.log(renderTable(facts, settings, rows.rows()))
}
