// test/support/delayed-device.ts: a device whose requests complete after a number of event-loop
// turns (setImmediate) drawn from a seeded generator, so completions arrive in a scrambled but
// reproducible order. A request takes effect when it completes (like scheduled-device.ts), so
// an engine that let two conflicting requests overlap would be caught.
import type { BlockDevice } from '../../io/block-device.js'

import { seededRandom } from '../../testing/seeded-random.js'

export { seededRandom }

/** Integers in [0, max] from a seeded generator. */
export function seededDelays(seed: number, max: number): () => number {
  const next = seededRandom(seed)
  return () => Math.floor(next() * (max + 1))
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Wraps `inner`: each request waits `delay()` turns of the event loop, then takes effect and
 * resolves. `delay` is called once per request, in submission order, with the request.
 * @example
 * const dev = delayedDevice(new MemoryDevice(1 << 16), seededDelays(42, 5))
 */
export type Delay = (op: 'read' | 'write' | 'flush', offset: number, length: number) => number

export function delayedDevice(inner: BlockDevice, delay: Delay): BlockDevice {
  const wait = async (op: 'read' | 'write' | 'flush', offset: number, length: number) => {
    for (let n = delay(op, offset, length); n > 0; n--) await turn()
  }
  return {
    get size() { return inner.size },
    supports: inner.supports,
    async read(offset, buffer) {
      await wait('read', offset, buffer.length)
      await inner.read(offset, buffer)
    },
    async write(offset, data) {
      const copy = data.slice() // the bytes as submitted
      await wait('write', offset, data.length)
      await inner.write(offset, copy)
    },
    async flush() {
      await wait('flush', 0, 0)
      await inner.flush()
    },
    close: () => inner.close(),
  }
}
