// Power cuts at random I/O positions of seeded workloads (power-cut.ts): out-of-order device
// completions, a random subset of the unflushed and in-flight writes kept and some torn, then
// a restart that loads every COW again. Every write covered by a resolved flush of its volume
// survives; every snapshot reads its model or is Invalid (only if it was Invalid at the cut).
// SNAPCOW_CRASH_CUTS sets the number of cuts (npm test: 240; npm run test:crash: thousands).
import { expect, test } from 'vitest'
import { cutAndRestart } from '../support/power-cut.js'

const CUTS = Number(process.env.SNAPCOW_CRASH_CUTS ?? 240)
const CUTS_PER_WORKLOAD = 12
const FIRST_SEED = Number(process.env.SNAPCOW_CRASH_SEED ?? 1)

test(`${CUTS} power cuts over ${Math.ceil(CUTS / CUTS_PER_WORKLOAD)} seeded workloads: flushed writes survive, snapshots read their model or are Invalid`, async () => {
  const failures: string[] = []
  let cuts = 0
  for (let seed = FIRST_SEED; cuts < CUTS; seed++) {
    // A run with no cut before the end tells how many requests the workload makes.
    const whole = await cutAndRestart(seed, Number.POSITIVE_INFINITY)
    cuts++
    if (whole.failure !== undefined) { failures.push(whole.failure); continue }
    for (let i = 1; i < CUTS_PER_WORKLOAD && cuts < CUTS; i++, cuts++) {
      const at = Math.floor(((i * 0.6180339887 + seed * 0.3819660113) % 1) * whole.requests)
      const outcome = await cutAndRestart(seed, at)
      if (outcome.failure !== undefined) { failures.push(outcome.failure); break } // one per workload
    }
    if (failures.length >= 3) break
  }
  if (failures.length > 0) console.error(failures.join('\n\n'))
  expect(failures.map((f) => f.split('\n')[0])).toEqual([])
})
