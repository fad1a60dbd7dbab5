// vitest.fuzz.config.ts: the fuzzers at nightly size (`npm run test:fuzz`): 10 000 mutated
// stores through loadSnapshot, 200 through `snapcow check` processes, and 1000 fuzzed NBD byte
// streams against the server; `npm test` runs the same files small. Sizes and the seed can still
// be set from outside.
import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/fuzz/**/*.test.ts'],
    env: {
      SNAPCOW_FUZZ_STORES: process.env.SNAPCOW_FUZZ_STORES ?? '10000',
      SNAPCOW_FUZZ_CLI: process.env.SNAPCOW_FUZZ_CLI ?? '200',
      SNAPCOW_FUZZ_NBD_STREAMS: process.env.SNAPCOW_FUZZ_NBD_STREAMS ?? '1000',
    },
    testTimeout: 3_600_000,
    reporters: ['default', new SummaryReporter()],
  },
})
