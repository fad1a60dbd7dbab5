// vitest.crash.config.ts: the crash and reordering tests at nightly size (`npm run test:crash`,
// several minutes); `npm test` runs the same files small. Sizes can still be set from outside.
import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/engine/power-cut.test.ts', 'test/engine/invalidation-crash.test.ts', 'test/engine/reordering.property.test.ts'],
    env: {
      SNAPCOW_CRASH_CUTS: process.env.SNAPCOW_CRASH_CUTS ?? '4000',
      SNAPCOW_REORDER_RUNS: process.env.SNAPCOW_REORDER_RUNS ?? '24',
      SNAPCOW_REORDER_OPS: process.env.SNAPCOW_REORDER_OPS ?? '4000',
    },
    testTimeout: 3_600_000,
    reporters: ['default', new SummaryReporter()],
  },
})
