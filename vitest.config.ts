import { configDefaults, defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/kernel needs root and a VM: `npm run test:kernel` (vitest.kernel.config.ts).
    exclude: [...configDefaults.exclude, 'test/kernel/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // 'default' for people, then one plain closing line for CI.
    reporters: ['default', new SummaryReporter()],
  },
})
