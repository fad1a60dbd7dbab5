// Power cuts at random I/O positions of seeded workloads (power-cut.ts): out-of-order device
// completions, a random subset of the unflushed and in-flight writes kept and some torn, then
// a restart that loads every COW again. Every write covered by a resolved flush of its volume
// survives; every snapshot reads its model or is Invalid (only if it was Invalid at the cut).
// SNAPCOW_CRASH_CUTS sets the number of cuts (npm test: 200; npm run test:crash: thousands).
import { expect, test } from 'vitest'
import type { EngineFaults } from '../../actors/engine.js'
import type { WorkloadOptions } from '../support/power-cut.js'
import { cutAndRestart } from '../support/power-cut.js'

const CUTS = Number(process.env.SNAPCOW_CRASH_CUTS ?? 200)
const CUTS_PER_WORKLOAD = 12
const FIRST_SEED = Number(process.env.SNAPCOW_CRASH_SEED ?? 1)

/** Cuts `total` times over workloads from `firstSeed` on; the failures (one per workload, `most` at most). */
async function cutMany(firstSeed: number, total: number, options: WorkloadOptions = {}, most = 3): Promise<string[]> {
  const failures: string[] = []
  let cuts = 0
  for (let seed = firstSeed; cuts < total; seed++) {
    // A run with no cut before the end tells how many requests the workload makes.
    const whole = await cutAndRestart(seed, Number.POSITIVE_INFINITY, options)
    cuts++
    if (whole.failure !== undefined) {
      failures.push(whole.failure)
      if (failures.length >= most) break
      continue
    }
    for (let i = 1; i < CUTS_PER_WORKLOAD && cuts < total; i++, cuts++) {
      const at = Math.floor(((i * 0.6180339887 + seed * 0.3819660113) % 1) * whole.requests)
      const outcome = await cutAndRestart(seed, at, options)
      if (outcome.failure !== undefined) { failures.push(outcome.failure); break }
    }
    if (failures.length >= most) break
  }
  return failures
}

test(`${CUTS} power cuts over ${Math.ceil(CUTS / CUTS_PER_WORKLOAD)} seeded workloads: flushed writes survive, snapshots read their model or are Invalid`, async () => {
  const failures = await cutMany(FIRST_SEED, CUTS, {}, 8)
  if (failures.length > 0) console.error(failures.join('\n\n'))
  expect(failures.map((f) => f.split('\n')[0])).toEqual([])
})

// Without fills and merges (where the known engine bugs 1 and 2 live) the engine passes these
// cuts; each broken ordering below makes some of them fail.
const PLAIN: WorkloadOptions = { fills: false, merges: false }

test('the power-cut test passes plain workloads (no fills, no merges) on the engine as it is', async () => {
  expect((await cutMany(500, 60, PLAIN)).map((f) => f.split('\n')[0])).toEqual([])
})

test.each<[string, EngineFaults]>([
  ['origin data written before the copy is committed', { originWriteBeforeCommit: true }],
  ['commits out of allocation order', { commitOutOfOrder: true }],
])('the power-cut test catches a broken engine: %s', async (_name, faults) => {
  expect((await cutMany(500, 60, { ...PLAIN, faults }, 1)).length).toBeGreaterThan(0)
})

// Failing seeds found by the test above, one per engine bug (each passes once its bug is fixed).
const NO_DROP_NO_CREATE: WorkloadOptions = { dropStoppedMerges: false, createWhileMerging: false }
test.each<[string, number, number, WorkloadOptions]>([
  ['an invalidated snapshot\'s valid = 0 is overtaken by origin writes on the fast path', 3, 154, {}],
  ['origin.flush() during a merge leaves the writes that went to the COW unflushed', 64, 234, NO_DROP_NO_CREATE],
  ['origin.flush() during a merge leaves the writes that went to the COW unflushed (2)', 94, 92, NO_DROP_NO_CREATE],
  ['a merging snapshot\'s flush() flushes its COW but not the origin (spec §5.5)', 29, Number.POSITIVE_INFINITY, {}],
  ['drop() of a snapshot whose merge was stopped loses the merged view', 6, Number.POSITIVE_INFINITY, {}],
  ['createSnapshot during a merge snapshots the raw origin device', 7, Number.POSITIVE_INFINITY, {}],
  // Found by the nightly run: the test's own model missed a merge that took over just before the cut.
  ['a cut right after a merge took over: the restart resumes that merge', 30, 279, {}],
  // Found by the nightly run: a snapshot created as another merge ended was left out of the
  // restart, so its own merge (taken over, then stopped) was not resumed.
  ['a snapshot created as a merge ended, merged and stopped: the restart resumes its merge', 203, 273, {}],
])('regression: %s (seed %i, cut at request %s)', async (_name, seed, cutAt, options) => {
  const { failure } = await cutAndRestart(seed, cutAt, options)
  if (failure !== undefined) console.error(failure)
  expect(failure?.split('\n')[0]).toBeUndefined()
})
