// vitest.properties.config.ts: the random-schedule properties at nightly size (`npm run
// test:properties`, several minutes); `npm test` runs the same files small, each with a fresh
// seed, so CI keeps looking. Two replay bugs were found only past 700 runs. Sizes can be set
// from outside; a failure prints the seed and path (SNAPCOW_JOURNAL_SEED / _PATH replay it).
import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/journal/replay.property.test.ts', 'test/engine/races.property.test.ts', 'test/engine/merge.property.test.ts'],
    env: {
      SNAPCOW_JOURNAL_RUNS: process.env.SNAPCOW_JOURNAL_RUNS ?? '5000',
      SNAPCOW_RACE_RUNS: process.env.SNAPCOW_RACE_RUNS ?? '5000',
      SNAPCOW_MERGE_RUNS: process.env.SNAPCOW_MERGE_RUNS ?? '2000',
    },
    testTimeout: 3_600_000,
    reporters: ['default', new SummaryReporter()],
  },
})
