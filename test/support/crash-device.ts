// test/support/crash-device.ts: a device with a volatile write cache, for crash tests. Writes
// land in a volatile image only; flush() makes every write completed before it durable. A
// CrashClock shared by several devices counts their requests and, from the chosen step on,
// makes all of them fail at once ("the machine crashed"). crash() then gives the image a
// restart would see: the durable one, or the durable one plus some of the unflushed writes
// (a cache may write back any of them, and a multi-sector write may be torn).
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'

const SECTOR = 512

/** Thrown by every request of a crashed device. */
export class CrashedError extends Error {
  constructor(what: string) {
    super(`crashed: ${what} refused`)
    this.name = 'CrashedError'
  }
}

/** One step counter for several devices: requests `0 … crashAt − 1` run, the rest throw. */
export class CrashClock {
  /** Requests allowed before the crash (Infinity: never crash). */
  crashAt = Number.POSITIVE_INFINITY
  /** Requests counted so far (never more than crashAt). */
  steps = 0
  /** Every request that ran, as `device op@offset+length`, for failure messages. */
  readonly trace: string[] = []
  /** True once a request has been refused. */
  crashed = false

  /** Starts counting from 0 again, crashing at `crashAt` (Infinity for a clean run). */
  arm(crashAt: number): void {
    this.crashAt = crashAt
    this.steps = 0
    this.trace.length = 0
    this.crashed = false
  }

  /** Called when a request is submitted: counts it, or throws if the crash has happened. */
  step(what: string): void {
    if (this.steps >= this.crashAt) {
      this.crashed = true
      throw new CrashedError(what)
    }
    this.steps++
    this.trace.push(what)
  }
}

/** What survives of the writes not yet flushed when the crash happened. */
export type CrashMode =
  /** None of them: only flushed data is on disk. */
  | 'lose-unflushed'
  /** All of them (the cache happened to write everything back). */
  | 'keep-unflushed'
  /** Every other one, in completion order (the 1st, 3rd, …). */
  | 'keep-alternate'
  /** All of them, each torn: only its first half of sectors (rounded up) reached the disk. */
  | 'torn'

export const CRASH_MODES: readonly CrashMode[] = ['lose-unflushed', 'keep-unflushed', 'keep-alternate', 'torn']

interface Unflushed { offset: number; data: Uint8Array }

export class CrashDevice implements BlockDevice {
  readonly #volatile: MemoryDevice
  readonly #durable: Uint8Array
  /** Completed writes since the last flush, in completion order. */
  readonly #unflushed: Unflushed[] = []
  /**
   * A broken cache for tests that prove a crash test notices: flush() succeeds but makes
   * nothing durable (as if the engine had skipped it).
   */
  lyingFlush = false

  constructor(image: Uint8Array, readonly clock: CrashClock = new CrashClock(), readonly name = 'device') {
    this.#volatile = MemoryDevice.from(image)
    this.#durable = image.slice()
  }

  get size(): number { return this.#volatile.size }

  async read(offset: number, buffer: Uint8Array): Promise<void> {
    this.clock.step(`${this.name} read@${offset}+${buffer.length}`)
    await this.#volatile.read(offset, buffer)
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.clock.step(`${this.name} write@${offset}+${data.length}`)
    const copy = data.slice()
    await this.#volatile.write(offset, copy)
    this.#unflushed.push({ offset, data: copy })
  }

  async flush(): Promise<void> {
    this.clock.step(`${this.name} flush`)
    const covered = this.#unflushed.length // only writes completed before the flush was issued
    await this.#volatile.flush()
    if (this.lyingFlush) return
    for (const w of this.#unflushed.splice(0, covered)) this.#durable.set(w.data, w.offset)
  }

  close(): Promise<void> { return this.#volatile.close() }

  /** Writes completed and not yet flushed. */
  get unflushedWrites(): number { return this.#unflushed.length }

  /** The bytes a restart after a crash now would find, as a fresh MemoryDevice. */
  crash(mode: CrashMode = 'lose-unflushed'): MemoryDevice {
    const image = this.#durable.slice()
    this.#unflushed.forEach((w, i) => {
      if (mode === 'keep-unflushed' || (mode === 'keep-alternate' && i % 2 === 0)) image.set(w.data, w.offset)
      if (mode === 'torn') image.set(w.data.subarray(0, Math.ceil(w.data.length / SECTOR / 2) * SECTOR), w.offset)
    })
    return MemoryDevice.from(image)
  }

  /** A copy of what is durable now. */
  durableBytes(): Uint8Array { return this.#durable.slice() }

  /** A copy of what reads would return now (durable plus every completed write). */
  volatileBytes(): Uint8Array { return this.#volatile.snapshotBytes() }
}
