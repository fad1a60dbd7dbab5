// `npm run bench -- --quick` works end to end (issue 10 item 7): one run, every workload
// family, machine facts, a ratio against the raw device where there is one and a verdict next
// to every target. No thresholds: misses are the benchmark's to report, not this test's.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { expect, test } from 'vitest'
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
