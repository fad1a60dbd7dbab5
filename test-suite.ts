// test-suite.ts: the `snapcow/test-suite` sub-entry, the BlockDevice conformance suite that
// every adapter (and Origin and Snapshot) runs; see test/conformance/block-device.ts.

export { blockDeviceSuite } from './test/conformance/block-device.js'
export type { BlockDeviceSuiteOptions, SuiteTest } from './test/conformance/block-device.js'
