// testing.ts: the `snapcow/testing` sub-entry: devices for crash and fault tests of code built
// on snapcow (docs/testing.md). The same devices drive snapcow's own power-cut and fault tests.

export { CrashClock, CrashDevice, CrashedError, CRASH_MODES } from './testing/crash-device.js'
export type { CrashMode, RandomCut } from './testing/crash-device.js'
export { FaultDevice } from './testing/fault-device.js'
export type { FaultOp, FaultPlan } from './testing/fault-device.js'
export { seededRandom } from './testing/seeded-random.js'
