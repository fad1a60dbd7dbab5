// testing/fault-device.ts: a device that fails chosen requests, for fault-injection tests of
// code built on snapcow: the Nth read, write or flush fails, once or from then on, with or
// without having taken effect (a device that wrote the data but lost the acknowledgement).
import type { BlockDevice, DeviceSupports } from '../io/block-device.js'

export type FaultOp = 'read' | 'write' | 'flush'

/** Which requests fail. Counts are 1-based and per kind of request (`op`), or over all kinds. */
export interface FaultPlan {
  /** The kind of request counted; omitted: every request counts. */
  op?: FaultOp
  /** The first request (1-based) that fails. */
  nth: number
  /** `'once'` (default): only the nth fails; `'from-then-on'`: it and every later one, as a dead disk. */
  mode?: 'once' | 'from-then-on'
  /** The request is done on the inner device before it fails (default false: no effect). */
  takesEffect?: boolean
  /** What a failed request rejects with (default: an Error with code `EIO`, naming the request). */
  error?: (op: FaultOp, offset: number, length: number) => Error
}

/**
 * Wraps a device and fails the requests a plan picks. Requests that do not fail pass through
 * unchanged; a failed one rejects asynchronously, never throws. `faultsInjected` counts them.
 * Without a plan it passes everything through until `arm()` gives it one.
 * @example
 * const cow = new FaultDevice(new MemoryDevice(1 << 20))
 * const snap = await origin.createSnapshot(cow)   // set up without faults
 * cow.arm({ op: 'write', nth: 1 })                // the next COW write fails ...
 * await origin.write(0, data)                     // ... the copy: snap is Invalid, the write succeeds
 */
export class FaultDevice implements BlockDevice {
  readonly supports: DeviceSupports | undefined
  #plan: FaultPlan | undefined
  #counted = 0
  #failing = false
  #injected = 0

  constructor(readonly inner: BlockDevice, plan?: FaultPlan) {
    this.supports = inner.supports
    // Forced-unit-access writes pass through (and count as writes) when the inner device has them.
    const fua = inner.writeFua?.bind(inner)
    if (fua !== undefined) this.writeFua = (offset, data) => this.#run('write', offset, data.length, () => fua(offset, data))
    if (plan !== undefined) this.arm(plan)
  }

  /** Present when the inner device has it: a write that is durable once it completes. */
  readonly writeFua: ((offset: number, data: Uint8Array) => Promise<void>) | undefined

  /** Follows `plan` from now on: its counts start at the next request. */
  arm(plan: FaultPlan): void {
    if (!Number.isSafeInteger(plan.nth) || plan.nth < 1) throw new RangeError(`FaultDevice: nth must be an integer ≥ 1, got ${String(plan.nth)}`)
    if (plan.op !== undefined && plan.op !== 'read' && plan.op !== 'write' && plan.op !== 'flush') {
      throw new RangeError(`FaultDevice: op must be 'read', 'write' or 'flush', got ${String(plan.op)}`)
    }
    if (plan.mode !== undefined && plan.mode !== 'once' && plan.mode !== 'from-then-on') {
      throw new RangeError(`FaultDevice: mode must be 'once' or 'from-then-on', got ${String(plan.mode)}`)
    }
    this.#plan = plan
    this.#counted = 0
    this.#failing = false
  }

  /** Stops failing requests (a repaired disk). */
  disarm(): void {
    this.#plan = undefined
    this.#failing = false
  }

  get size(): number { return this.inner.size }

  /** Requests failed so far. */
  get faultsInjected(): number { return this.#injected }

  read(offset: number, buffer: Uint8Array): Promise<void> {
    return this.#run('read', offset, buffer.length, () => this.inner.read(offset, buffer))
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#run('write', offset, data.length, () => this.inner.write(offset, data))
  }

  flush(): Promise<void> {
    return this.#run('flush', 0, 0, () => this.inner.flush())
  }

  close(): Promise<void> { return this.inner.close() }

  #fails(plan: FaultPlan | undefined, op: FaultOp): plan is FaultPlan {
    if (plan === undefined || (plan.op !== undefined && plan.op !== op)) return false
    if (this.#failing) return true
    if (++this.#counted !== plan.nth) return false
    if (plan.mode === 'from-then-on') this.#failing = true
    return true
  }

  async #run(op: FaultOp, offset: number, length: number, io: () => Promise<void>): Promise<void> {
    const plan = this.#plan
    if (!this.#fails(plan, op)) return io()
    this.#injected++
    if (plan.takesEffect === true) await io()
    else await new Promise<void>((resolve) => setImmediate(resolve))
    throw plan.error?.(op, offset, length)
      ?? Object.assign(new Error(`injected fault: ${op}${op === 'flush' ? '' : ` of ${length} bytes at offset ${offset}`}`), { code: 'EIO' })
  }
}
