// test/support/failing-device.ts: a device that fails chosen requests, for the journal's
// device-failure tests. A failed request has no effect on the inner device; `decide` is asked
// once per request, in submission order, and returns the error to fail it with (or nothing).
import type { BlockDevice } from '../../io/block-device.js'

export type FailureDecision = (op: 'read' | 'write' | 'flush', offset: number, length: number) => unknown

/**
 * Wraps `inner`: a request that `decide` answers with an error rejects with it (one turn later)
 * and is not passed on.
 * @example
 * const dev = failingDevice(new MemoryDevice(1 << 16), (op) => (op === 'write' ? new Error('boom') : undefined))
 */
export function failingDevice(inner: BlockDevice, decide: FailureDecision): BlockDevice {
  const run = (op: 'read' | 'write' | 'flush', offset: number, length: number, io: () => Promise<void>): Promise<void> => {
    const error = decide(op, offset, length)
    if (error === undefined) return io()
    return new Promise<void>((_, reject) => setImmediate(() => reject(error)))
  }
  return {
    get size() { return inner.size },
    supports: inner.supports,
    read: (offset, buffer) => run('read', offset, buffer.length, () => inner.read(offset, buffer)),
    write: (offset, data) => run('write', offset, data.length, () => inner.write(offset, data)),
    flush: () => run('flush', 0, 0, () => inner.flush()),
    close: () => inner.close(),
  }
}

/** Fails only the `nth` (1-based) request of kind `op` with `error`. */
export function failNth(op: 'read' | 'write' | 'flush', nth: number, error: unknown): FailureDecision {
  let seen = 0
  return (kind) => (kind === op && ++seen === nth ? error : undefined)
}
