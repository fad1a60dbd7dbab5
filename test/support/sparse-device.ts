// test/support/sparse-device.ts: a large device that keeps only the 4 KiB pages written to it
// (the rest reads as zeros), so tests can hold gigabyte-sized stores in little memory.
import { DeviceBase } from '../../io/device-base.js'
import type { ByteOffset } from '../../io/units.js'

const PAGE = 4096

export class SparseDevice extends DeviceBase {
  readonly #pages = new Map<number, Uint8Array>()

  constructor(size: number) {
    super(size, { flush: true, persistent: false })
  }

  protected override async _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    for (let at = 0; at < into.length;) {
      const page = Math.floor((offset + at) / PAGE)
      const within = (offset + at) % PAGE
      const n = Math.min(PAGE - within, into.length - at)
      const bytes = this.#pages.get(page)
      if (bytes === undefined) into.fill(0, at, at + n)
      else into.set(bytes.subarray(within, within + n), at)
      at += n
    }
  }

  protected override async _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    for (let at = 0; at < data.length;) {
      const page = Math.floor((offset + at) / PAGE)
      const within = (offset + at) % PAGE
      const n = Math.min(PAGE - within, data.length - at)
      let bytes = this.#pages.get(page)
      if (bytes === undefined) this.#pages.set(page, (bytes = new Uint8Array(PAGE)))
      bytes.set(data.subarray(at, at + n), within)
      at += n
    }
  }

  protected override async _flush(): Promise<void> {}
  protected override async _close(): Promise<void> {}
}
