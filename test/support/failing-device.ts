// test/support/failing-device.ts: a device that fails chosen requests, for the journal's
// device-failure tests. `decide` is asked once per request, in submission order; a failed
// request either has no effect on the inner device or (`takesEffect`) is done and then fails,
// as when a device loses the acknowledgement.
import type { BlockDevice } from '../../io/block-device.js'

export interface Failure {
  /** What the request rejects with. */
  error: unknown
  /** The request is passed on (and done) before it fails. */
  takesEffect?: boolean
}

export type FailureDecision = (op: 'read' | 'write' | 'flush', offset: number, length: number) => Failure | undefined

/**
 * Wraps `inner`: a request that `decide` answers with a Failure rejects with its error (one
 * turn later, or once the inner request is done if it takes effect).
 * @example
 * const dev = failingDevice(new MemoryDevice(1 << 16), (op) => (op === 'write' ? { error: new Error('boom') } : undefined))
 */
export function failingDevice(inner: BlockDevice, decide: FailureDecision): BlockDevice {
  const run = async (op: 'read' | 'write' | 'flush', offset: number, length: number, io: () => Promise<void>): Promise<void> => {
    const failure = decide(op, offset, length)
    if (failure === undefined) return io()
    if (failure.takesEffect === true) await io()
    else await new Promise<void>((resolve) => setImmediate(resolve))
    throw failure.error
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

/** Fails only the `nth` (1-based) request of kind `op` with `error`, without effect. */
export function failNth(op: 'read' | 'write' | 'flush', nth: number, error: unknown): FailureDecision {
  let seen = 0
  return (kind) => (kind === op && ++seen === nth ? { error } : undefined)
}
