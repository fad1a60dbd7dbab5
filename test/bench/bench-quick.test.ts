// `npm run bench -- --quick` works end to end (issue 10 item 7): one run, every workload
// family, machine facts, a ratio against the raw device where there is one and a verdict next
// to every target. No thresholds: misses are the benchmark's to report, not this test's.
// And `--nbd --quick`: snapcow serve driven by fio and nbdcopy (skipped, saying why, without
// fio). Both in this file so they run in turn: each bundles the bench to the same place.
import { execFile, spawnSync } from 'node:child_process'
import { promisify } from 'node:util'
import { expect, test } from 'vitest'
import type { NbdRow } from '../../bench/nbd/results.js'
import { NW } from '../../bench/nbd/workloads.js'
import type { Row } from '../../bench/rows.js'

const run = promisify(execFile)

test('npm run bench -- --quick --json: every family, facts, ratios and verdicts', async () => {
  const { stdout } = await run('npm', ['run', '--silent', 'bench', '--', '--quick', '--json'],
    { maxBuffer: 16 << 20, timeout: 170_000 })
  const result = JSON.parse(stdout) as { machine: Record<string, unknown>; reps: number; rows: Row[] }

  expect(result.machine.node).toBe(process.version)
  expect(result.machine.cores).toBeGreaterThan(0)
  expect(String(result.machine.tmpfs)).toMatch(/snapcow-bench-/)
  expect(result.reps).toBe(1)
  const families = new Set(result.rows.map((r) => r.family))
  expect([...families].sort()).toEqual(['journal', 'lifecycle', 'merge', 'million', 'reads', 'sequential', 'writes'])

  // The engine rows run once per executor (compiled and xstate).
  expect(new Set(result.rows.filter((r) => r.family === 'reads').map((r) => r.executor))).toEqual(new Set(['compiled', 'xstate']))
  for (const kind of ['memory', 'file']) {
    for (const depth of [1, 32]) {
      const reads = result.rows.filter((r) => r.family === 'reads' && r.device === kind && r.depth === depth)
      expect(reads, `${kind} QD ${depth}`).toHaveLength(3 * 2)
    }
  }
  const compiled = result.rows.find((r) => r.family === 'lifecycle' && r.executor === 'compiled')
  expect(compiled?.value?.median).toBeGreaterThan(0)
  for (const row of result.rows) {
    const name = `${row.workload} ${row.device} ${row.depth ?? ''} ${row.executor}`
    if (row.value === undefined) {
      expect(row.note, name).toMatch(/not available yet|expose-gc/)
      continue
    }
    expect(Number.isFinite(row.value.median), name).toBe(true)
    if (row.unit !== 'B') expect(row.value.median, name).toBeGreaterThan(0) // heap deltas may dip below 0
    if (row.baselineName !== undefined) expect(row.ratio?.median, name).toBeGreaterThan(0)
    if (row.target !== undefined) expect(['PASS', 'MISS'], name).toContain(row.verdict)
  }
  const targeted = result.rows.filter((r) => r.target !== undefined).map((r) => r.workload)
  expect(new Set(targeted).size).toBeGreaterThanOrEqual(8)
  const xstate = result.rows.find((r) => r.family === 'lifecycle' && r.executor === 'xstate')
  expect(xstate?.value?.median).toBeGreaterThan(0)
}, 180_000)

const hasFio = spawnSync('fio', ['--version']).status === 0
const hasNbdcopy = spawnSync('nbdcopy', ['--version']).status === 0

test.skipIf(!hasFio)('npm run bench -- --nbd --quick --json: snapcow rows for every workload' + (hasFio ? '' : ' (skipped: fio is not installed; apt-get install fio)'), async () => {
  const { stdout } = await run('npm', ['run', '--silent', 'bench', '--', '--nbd', '--quick', '--json'], { maxBuffer: 16 << 20, timeout: 110_000 })
  const result = JSON.parse(stdout) as { quick: boolean; reps: number; skipped: string[]; rows: NbdRow[] }
  expect(result.quick).toBe(true)
  expect(result.reps).toBe(1)
  expect(result.skipped.join(' ')).toMatch(/nbdkit-file \(--quick runs snapcow only\)/)
  const fioWorkloads = [NW.uncopiedRead, NW.firstTouch, NW.rewrite, NW.copiedRead, NW.seqWrite, NW.seqRead]
  const system = 'snapcow'
  const rows = result.rows.filter((r) => r.family === 'nbd' && r.device === system)
  for (const workload of fioWorkloads) {
    for (const depth of [1, 32]) {
      const row = rows.find((r) => r.workload === workload && r.depth === depth)
      const name = `${system} ${workload} QD ${depth}`
      expect(row, name).toBeDefined()
      expect(row!.value!.median, name).toBeGreaterThan(0)
      expect(row!.p50us!.median, name).toBeGreaterThan(0)
      expect(row!.p99us!.median, name).toBeGreaterThanOrEqual(row!.p50us!.median)
    }
  }
  if (hasNbdcopy) for (const workload of [NW.copyIn, NW.copyOut]) expect(rows.find((r) => r.workload === workload)?.value?.median, `${system} ${workload}`).toBeGreaterThan(0)
  const rss = result.rows.find((r) => r.family === 'nbd-rss' && r.device === system && r.target === undefined)
  expect(rss?.value?.median, `${system} VmHWM`).toBeGreaterThan(1) // MiB: a Node process is tens of MiB
  // the targets need peers, which --quick does not run: each says so instead of a verdict
  for (const row of result.rows.filter((r) => r.target !== undefined)) {
    expect(row.verdict, row.workload).toBeUndefined()
    expect(row.note, row.workload).toMatch(/not measured/)
  }
}, 120_000)
