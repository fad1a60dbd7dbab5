// test/support/scheduled-device.ts: a device whose every request completes when fast-check's
// scheduler says so, and takes effect at that moment (not when it was submitted), so that
// any request the engine lets overlap a conflicting one can be caught seeing the wrong data.
import type { Scheduler } from 'fast-check'
import type { BlockDevice } from '../../io/block-device.js'

export function scheduledDevice(s: Scheduler, inner: BlockDevice, name: string): BlockDevice {
  return {
    get size() { return inner.size },
    async read(offset, buffer) {
      await s.schedule(Promise.resolve(), `${name} read ${offset}+${buffer.length}`)
      await inner.read(offset, buffer)
    },
    async write(offset, data) {
      const copy = data.slice() // the request's bytes as submitted
      await s.schedule(Promise.resolve(), `${name} write ${offset}+${data.length}`)
      await inner.write(offset, copy)
    },
    async flush() {
      await s.schedule(Promise.resolve(), `${name} flush`)
      await inner.flush()
    },
    close: () => inner.close(),
  }
}
