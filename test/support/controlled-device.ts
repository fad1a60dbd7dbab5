// test/support/controlled-device.ts: a device whose requests wait until the test releases
// them, one by one, and take effect when released. Lets a test stop the engine at any step.
import type { BlockDevice } from '../../io/block-device.js'

export interface ParkedOp {
  op: 'read' | 'write' | 'flush'
  offset: number
  length: number
  release(): void
  /** Completes the request with an I/O error, without any effect. */
  fail(): void
}

export class ControlledDevice implements BlockDevice {
  readonly parked: ParkedOp[] = []
  /** Every request in the order it was submitted, e.g. `write@4096+4096`. */
  readonly submitted: string[] = []
  /** Requests matching this pass straight through (default: none). */
  passThrough: (op: 'read' | 'write' | 'flush', offset: number) => boolean = () => false

  constructor(readonly inner: BlockDevice, readonly name = 'device') {}

  get size(): number { return this.inner.size }

  read(offset: number, buffer: Uint8Array): Promise<void> {
    return this.#park('read', offset, buffer.length, () => this.inner.read(offset, buffer))
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    const copy = data.slice()
    return this.#park('write', offset, data.length, () => this.inner.write(offset, copy))
  }

  flush(): Promise<void> {
    return this.#park('flush', 0, 0, () => this.inner.flush())
  }

  close(): Promise<void> { return this.inner.close() }

  /** Parked requests matching `op` (and `offset`, if given). */
  find(op: ParkedOp['op'], offset?: number): ParkedOp[] {
    return this.parked.filter((p) => p.op === op && (offset === undefined || p.offset === offset))
  }

  /** Releases the first parked request that matches; throws if there is none. */
  releaseOne(op: ParkedOp['op'], offset?: number): void {
    const found = this.find(op, offset)[0]
    if (found === undefined) throw new Error(`${this.name}: no parked ${op}${offset === undefined ? '' : ` at ${offset}`}; parked: ${this.describe()}`)
    found.release()
  }

  /** Releases everything parked now (not what their completion submits). */
  releaseAll(): void {
    for (const p of [...this.parked]) p.release()
  }

  describe(): string {
    return this.parked.map((p) => `${p.op}@${p.offset}+${p.length}`).join(', ') || 'nothing'
  }

  #park(op: ParkedOp['op'], offset: number, length: number, run: () => Promise<void>): Promise<void> {
    this.submitted.push(op === 'flush' ? 'flush' : `${op}@${offset}+${length}`)
    if (this.passThrough(op, offset)) return run()
    return new Promise((resolve, reject) => {
      const parked: ParkedOp = {
        op, offset, length,
        release: () => {
          this.parked.splice(this.parked.indexOf(parked), 1)
          run().then(resolve, reject)
        },
        fail: () => {
          this.parked.splice(this.parked.indexOf(parked), 1)
          reject(new Error(`${this.name}: injected ${op} error at ${offset}`))
        },
      }
      this.parked.push(parked)
    })
  }
}

/** Lets every promise reaction that is ready run (the engine reacts in microtasks). */
export const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await Promise.resolve()
  await new Promise((resolve) => setImmediate(resolve))
}
