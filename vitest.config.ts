import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // 'default' for people, then one plain closing line for CI.
    reporters: ['default', new SummaryReporter()],
  },
})
