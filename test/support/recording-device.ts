// test/support/recording-device.ts: wraps a device and records every request in order, so
// tests can check ordering (flush before a commit, zeroing before an area fills) and that a
// rejected operation wrote nothing. `failWrite` makes chosen writes fail.
import type { BlockDevice } from '../../io/block-device.js'

export type DeviceOp =
  | { op: 'read'; offset: number; length: number }
  | { op: 'write'; offset: number; length: number }
  | { op: 'flush' }

export class RecordingDevice implements BlockDevice {
  readonly ops: DeviceOp[] = []
  /** Return true to make that write reject (it does not reach the device). */
  failWrite: (offset: number, length: number) => boolean = () => false
  /** Return true to make that read reject. */
  failRead: (offset: number, length: number) => boolean = () => false

  constructor(readonly inner: BlockDevice) {}

  get size(): number { return this.inner.size }

  async read(offset: number, buffer: Uint8Array): Promise<void> {
    this.ops.push({ op: 'read', offset, length: buffer.length })
    if (this.failRead(offset, buffer.length)) throw new Error(`injected read error at ${offset}`)
    await this.inner.read(offset, buffer)
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.ops.push({ op: 'write', offset, length: data.length })
    if (this.failWrite(offset, data.length)) throw new Error(`injected write error at ${offset}`)
    await this.inner.write(offset, data)
  }

  async flush(): Promise<void> {
    this.ops.push({ op: 'flush' })
    await this.inner.flush()
  }

  close(): Promise<void> { return this.inner.close() }

  writes(): Array<{ offset: number; length: number }> {
    return this.ops.flatMap((o) => (o.op === 'write' ? [{ offset: o.offset, length: o.length }] : []))
  }

  /** The ops as short strings, e.g. `flush`, `write@4096+4096`. */
  trace(): string[] {
    return this.ops.filter((o) => o.op !== 'read').map((o) => (o.op === 'flush' ? 'flush' : `${o.op}@${o.offset}+${o.length}`))
  }
}
