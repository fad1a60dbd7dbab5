// testing/crash-device.ts (public as `snapcow/testing`): a device with a volatile write cache, for crash tests. Writes
// land in a volatile image only; flush() makes every write completed before it durable. A
// CrashClock shared by several devices counts their requests and, from the chosen step on,
// makes all of them fail at once ("the machine crashed"). crash() then gives the image a
// restart would see: the durable one, or the durable one plus some of the unflushed writes
// (a cache may write back any of them, and a multi-sector write may be torn). With a seeded
// delay, requests complete out of order and take effect only when they complete; a seeded
// RandomCut keeps a random subset of the unflushed and in-flight writes and tears some.
import type { BlockDevice } from '../io/block-device.js'
import { MemoryDevice } from '../io/memory-device.js'

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
  /** Called once, synchronously, when the first request is refused (the instant of the cut). */
  onCrash: (() => void) | undefined

  /** Cuts the power now: every later request (and every completion still to come) fails. */
  cut(): void {
    if (this.crashed) return
    this.crashed = true
    this.crashAt = this.steps
    this.onCrash?.()
  }

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
      this.cut()
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

/**
 * A seeded power cut: each write completed since the last flush, and each write still in
 * flight, reached the disk with probability 1/2; one that did and spans several sectors is
 * torn with probability `tornShare`: only a prefix of its sectors (cut at a random sector
 * boundary), or with `subsets` sometimes an arbitrary subset of them, landed.
 */
export interface RandomCut {
  /** Uniform numbers in [0, 1) (seededRandom of testing/seeded-random.ts). */
  random: () => number
  /** Share of the surviving multi-sector writes that are torn (default 0.5). */
  tornShare?: number
  /** Tear some writes into an arbitrary subset of sectors, not only a prefix (default false). */
  subsets?: boolean
}

interface Unflushed { offset: number; data: Uint8Array; seq?: number }

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
  /** With a delay: writes submitted and not yet completed, in submission order. */
  readonly #inFlight = new Set<Unflushed>()
  readonly #delay: (() => number) | undefined
  #seq = 0

  /**
   * `delay`, if given, is called once per request, in submission order, for the number of
   * event-loop turns (setImmediate) before it completes; the request takes effect then.
   */
  constructor(image: Uint8Array, readonly clock: CrashClock = new CrashClock(), readonly name = 'device',
    options: { delay?: () => number; fua?: boolean } = {}) {
    this.#volatile = MemoryDevice.from(image)
    this.#durable = image.slice()
    this.#delay = options.delay
    if (options.fua !== false) this.writeFua = (offset, data) => this.#writeFua(offset, data)
  }

  /** Present unless the constructor's options say `fua: false` (see #writeFua). */
  writeFua: ((offset: number, data: Uint8Array) => Promise<void>) | undefined

  get size(): number { return this.#volatile.size }

  async read(offset: number, buffer: Uint8Array): Promise<void> {
    this.clock.step(`${this.name} read@${offset}+${buffer.length}`)
    if (this.#delay !== undefined) await this.#wait(`${this.name} read@${offset}+${buffer.length}`)
    await this.#volatile.read(offset, buffer)
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.clock.step(`${this.name} write@${offset}+${data.length}`)
    const copy = data.slice()
    if (this.#delay === undefined) {
      await this.#volatile.write(offset, copy)
      this.#unflushed.push({ offset, data: copy })
      return
    }
    const request: Unflushed = { offset, data: copy }
    this.#inFlight.add(request)
    // If the power is cut meanwhile this throws and the write stays "in flight": it may have landed.
    await this.#wait(`${this.name} write@${offset}+${data.length}`)
    this.#inFlight.delete(request)
    await this.#volatile.write(offset, copy)
    request.seq = this.#seq++
    this.#unflushed.push(request)
  }

  /**
   * A forced-unit-access write: durable once it completes, without making other unflushed
   * writes durable. Until then (with a delay) it is in flight and a cut may keep or tear it.
   * `fua: false` in the constructor's options hides it, as on a device without FUA.
   */
  async #writeFua(offset: number, data: Uint8Array): Promise<void> {
    this.clock.step(`${this.name} write-fua@${offset}+${data.length}`)
    const copy = data.slice()
    const request: Unflushed = { offset, data: copy }
    if (this.#delay !== undefined) {
      this.#inFlight.add(request)
      await this.#wait(`${this.name} write-fua@${offset}+${data.length}`)
      this.#inFlight.delete(request)
    }
    await this.#volatile.write(offset, copy)
    if (!this.lyingFlush) this.#durable.set(copy, offset)
    else this.#unflushed.push(request)
  }

  async flush(): Promise<void> {
    this.clock.step(`${this.name} flush`)
    const covered = this.#unflushed.slice() // only writes completed before the flush was issued
    if (this.#delay !== undefined) await this.#wait(`${this.name} flush`)
    await this.#volatile.flush()
    if (this.lyingFlush) return
    const durable = new Set(covered)
    // Writes complete in order, and a flush covers a prefix of them: keep the rest unflushed.
    const rest = this.#unflushed.filter((w) => !durable.has(w))
    const made = this.#unflushed.filter((w) => durable.has(w))
    this.#unflushed.length = 0
    this.#unflushed.push(...rest)
    for (const w of made) this.#durable.set(w.data, w.offset)
  }

  /** The seeded delay, then a CrashedError if the power was cut meanwhile. */
  async #wait(what: string): Promise<void> {
    for (let n = this.#delay!(); n > 0; n--) await new Promise<void>((resolve) => setImmediate(resolve))
    if (this.clock.crashed) throw new CrashedError(`${what} (in flight at the cut)`)
  }

  close(): Promise<void> { return this.#volatile.close() }

  /** Writes completed and not yet flushed. */
  get unflushedWrites(): number { return this.#unflushed.length }

  /** Writes submitted and not completed (only with a delay). */
  get writesInFlight(): number { return this.#inFlight.size }

  /**
   * Cuts the power now: this device (and every device sharing its clock) refuses every later
   * request and completion. Returns what a restart finds, as `crash(mode)` does.
   * @example
   * const restarted = cow.cut({ random: seededRandom(seed) }) // some unflushed writes kept, some torn
   */
  cut(mode: CrashMode | RandomCut = 'lose-unflushed'): MemoryDevice {
    this.clock.cut()
    return this.crash(mode)
  }

  /** The bytes a restart after a crash now would find, as a fresh MemoryDevice. */
  crash(mode: CrashMode | RandomCut = 'lose-unflushed'): MemoryDevice {
    const image = this.#durable.slice()
    if (typeof mode === 'object') {
      for (const w of [...this.#unflushed, ...this.#inFlight]) landRandomly(image, w, mode)
      return MemoryDevice.from(image)
    }
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

/** One write after a RandomCut: lost, whole, or torn at sector boundaries. */
function landRandomly(image: Uint8Array, w: Unflushed, cut: RandomCut): void {
  if (cut.random() < 0.5) return // never reached the disk
  const sectors = w.data.length / SECTOR
  if (sectors < 2 || cut.random() >= (cut.tornShare ?? 0.5)) {
    image.set(w.data, w.offset)
    return
  }
  if (cut.subsets === true && cut.random() < 0.5) { // an arbitrary subset of its sectors
    for (let i = 0; i < sectors; i++) {
      if (cut.random() < 0.5) image.set(w.data.subarray(i * SECTOR, (i + 1) * SECTOR), w.offset + i * SECTOR)
    }
    return
  }
  const prefix = 1 + Math.floor(cut.random() * (sectors - 1)) // 1 … sectors − 1 sectors landed
  image.set(w.data.subarray(0, prefix * SECTOR), w.offset)
}
