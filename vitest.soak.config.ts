// vitest.soak.config.ts: the soak tests of `snapcow serve` at nightly size (`npm run test:soak`,
// a few minutes: 60 s of 32-client load, 5000 connect/disconnect cycles); `npm test` runs the
// same files at CI size. SNAPCOW_SOAK_SECONDS, _CYCLES, _RESETS, _KILLS and _SEED can still be set.
import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/soak/**/*.test.ts'],
    env: {
      SNAPCOW_SOAK_SECONDS: process.env.SNAPCOW_SOAK_SECONDS ?? '60',
      SNAPCOW_SOAK_CYCLES: process.env.SNAPCOW_SOAK_CYCLES ?? '5000',
      SNAPCOW_SOAK_RESETS: process.env.SNAPCOW_SOAK_RESETS ?? '20',
      SNAPCOW_SOAK_KILLS: process.env.SNAPCOW_SOAK_KILLS ?? '10',
    },
    // One file at a time: each measures a server's RSS and throughput, best not shared.
    fileParallelism: false,
    testTimeout: 3_600_000,
    hookTimeout: 120_000,
    reporters: ['default', new SummaryReporter()],
  },
})
