// vitest.kernel.config.ts: the tests against the real Linux dm-snapshot (test/kernel, through
// ../shared/oracle: a qemu VM per case, as root). `npm run test:kernel`; not part of `npm test`.
import { defineConfig } from 'vitest/config'
import SummaryReporter from './test/support/summary-reporter.js'

export default defineConfig({
  test: {
    include: ['test/kernel/**/*.kernel.test.ts'],
    // A VM boot takes 7–10 s under TCG; the first run also installs qemu and fetches the kernel.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    // One VM at a time: the CI machine has two cores.
    fileParallelism: false,
    reporters: ['default', new SummaryReporter()],
  },
})
