// vitest.fuzz.config.ts: the hostile-store fuzzer at nightly size (`npm run test:fuzz`): 10 000
// mutated stores through loadSnapshot and 200 through `snapcow check` processes; `npm test` runs
// the same file small. Sizes and the seed can still be set from outside.
import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.test.ts'],
    env: {
      SNAPCOW_FUZZ_STORES: process.env.SNAPCOW_FUZZ_STORES ?? '10000',
      SNAPCOW_FUZZ_CLI: process.env.SNAPCOW_FUZZ_CLI ?? '200',
    },
    testTimeout: 3_600_000,
    reporters: ['default', new SummaryReporter()],
  },
})
