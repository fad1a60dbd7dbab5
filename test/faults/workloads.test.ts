// Faults at every I/O position of fixed workloads (issue 13 item 2): each workload runs clean
// once, then once per fault position (device × kind × n, once and from then on, with and
// without effect for writes), and the kernel's rules are checked after each (fault-rig.ts).
// `npm test` samples CI_POSITIONS per workload; `npm run test:faults` runs every position.
import { describe, expect, test } from 'vitest'
import { runPositions, tally } from './fault-rig.js'
import { areaRollover, groupCommit, invalidation, merge, snapshotWrites } from './workloads.js'

const CI_POSITIONS = 40

describe('a fault at any I/O position breaks none of the kernel\'s rules', () => {
  test.each([groupCommit, areaRollover, snapshotWrites, invalidation, merge])('$name', async (workload) => {
    const before = { ...tally }
    const { ran, total } = await runPositions(workload, CI_POSITIONS)
    expect(ran).toBe(Math.min(total, process.env.SNAPCOW_FAULT_POSITIONS === 'all' ? total : Number(process.env.SNAPCOW_FAULT_POSITIONS || CI_POSITIONS)))
    // The positions did reach the paths under test: some runs invalidated a snapshot or failed a request.
    expect(tally.invalidated - before.invalidated + tally.withFailedRequests - before.withFailedRequests).toBeGreaterThan(0)
  })

  test('with every position, each path is taken: invalidations, failed requests, failed merges, header warnings', async () => {
    if (process.env.SNAPCOW_FAULT_POSITIONS !== 'all') return // sampled runs may miss one
    expect(tally.invalidated).toBeGreaterThan(0)
    expect(tally.withFailedRequests).toBeGreaterThan(0)
    expect(tally.failedMerges).toBeGreaterThan(0)
    expect(tally.warnings).toBeGreaterThan(0)
  })
})
