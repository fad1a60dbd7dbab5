// vitest.faults.config.ts: the fault tests at every I/O position (`npm run test:faults`, about a
// minute); `npm test` runs the same files on a sample of positions. SNAPCOW_FAULT_POSITIONS
// (a number) and SNAPCOW_FAULT_SEED can still be set from outside.
import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    env: { SNAPCOW_FAULT_POSITIONS: process.env.SNAPCOW_FAULT_POSITIONS ?? 'all' },
    testTimeout: 3_600_000,
    reporters: ['default', new SummaryReporter()],
  },
})
