// io/cow-format/persistent-store.ts: the kernel's persistent exception store ('P', spec §9):
// allocation that skips metadata chunks (§9.4), group commit in allocation order with the
// next area zeroed before a full one is written (§9.5), invalidation (§9.7) and the two merge
// steps (§9.8). Every device write goes through one queue, so the in-memory area is never
// changed while the device is still writing it.
import type { BlockDevice } from '../block-device.js'
import { CowFormatError, SnapcowError } from '../errors.js'
import type { ExceptionStore, StoreUsage } from '../exception-store.js'
import type { ChunkSectors, NewChunk, OldChunk } from '../units.js'
import { asNewChunk, asOldChunk, asSector, bytesToSectors } from '../units.js'
import { chunkSectorsProblem } from './chunk-size.js'
import type { CowGeometry } from './geometry.js'
import { cowGeometry, FIRST_DATA_CHUNK } from './geometry.js'
import { encodeHeaderChunk } from './header.js'
import type { LoadStoreOptions } from './load-store.js'
import { loadStore } from './load-store.js'
import { clearRecord, readRecord, writeRecord } from './record-io.js'
import { SerialQueue } from './serial-queue.js'

/** The last run of consecutive exceptions in the table, as the kernel's merge takes it. */
export interface MergeRun {
  lastOld: OldChunk
  lastNew: NewChunk
  /** Records in the run, counted back from the last one, within one area (≥ 1). */
  count: number
}

/**
 * A persistent ('P') exception store on a COW device, byte-compatible with Linux.
 * @example
 * const store = await PersistentStore.create(cowDevice, asChunkSectors(8))
 * const chunk = store.allocate()!
 * // ... copy the origin chunk to `chunk` ...
 * const ok = await store.commit(asOldChunk(5), chunk, true)
 */
export class PersistentStore implements ExceptionStore {
  readonly kind = 'P' as const
  readonly device: BlockDevice
  readonly geometry: CowGeometry
  #valid: boolean
  #currentArea: number
  #currentCommitted: number
  #nextFree: NewChunk
  #area: Uint8Array
  #areaView: DataView
  /** Allocations not yet committed, oldest first: commits must come in this order. */
  readonly #uncommitted: NewChunk[] = []
  #uncommittedHead = 0
  /** Allocations whose commit the queue has not reached yet (the kernel's pending_count). */
  #pendingCount = 0
  /** Commits requested whose turn in the I/O queue has not come yet. */
  #commitsQueued = 0
  /** Callers of commit() whose record waits for the batch write. */
  readonly #waiting: Array<(ok: boolean) => void> = []
  readonly #io = new SerialQueue()

  private constructor(device: BlockDevice, geometry: CowGeometry, state: {
    valid: boolean; currentArea: number; currentCommitted: number; nextFree: NewChunk; area: Uint8Array
  }) {
    this.device = device
    this.geometry = geometry
    this.#valid = state.valid
    this.#currentArea = state.currentArea
    this.#currentCommitted = state.currentCommitted
    this.#nextFree = state.nextFree
    this.#area = state.area
    this.#areaView = new DataView(state.area.buffer, state.area.byteOffset, state.area.byteLength)
  }

  /**
   * Writes a fresh, empty store (zeroed area 0, then the header, each flushed) and opens it.
   * The bytes are the kernel's; the order is safer than the kernel's (header last), so a crash
   * half way leaves a device that still reads as "no store" rather than a header over stale
   * metadata. Rejects an illegal chunk size (RangeError) or a device with no room for
   * one data chunk (CowFormatError SNAPCOW_COW_TOO_SMALL), before writing anything.
   */
  static async create(device: BlockDevice, chunkSectors: ChunkSectors): Promise<PersistentStore> {
    const problem = chunkSectorsProblem(chunkSectors)
    if (problem !== undefined) throw new RangeError(`chunk size ${chunkSectors} sectors ${problem}`)
    const geometry = cowGeometry(chunkSectors)
    const minimum = 3 * geometry.chunkBytes // header, area 0, one data chunk
    if (device.size < minimum) {
      throw new CowFormatError('SNAPCOW_COW_TOO_SMALL', 'size', device.size,
        `COW device of ${device.size} bytes is too small: a store of ${geometry.chunkBytes}-byte chunks ` +
        `needs at least ${minimum} bytes (header, metadata area 0 and one data chunk)`)
    }
    const area = new Uint8Array(geometry.chunkBytes)
    await device.write(geometry.areaLocation(0) * geometry.chunkBytes, area)
    await device.flush()
    await device.write(0, encodeHeaderChunk(geometry.chunkBytes, { valid: true, chunkSectors }))
    await device.flush()
    return new PersistentStore(device, geometry,
      { valid: true, currentArea: 0, currentCommitted: 0, nextFree: FIRST_DATA_CHUNK, area })
  }

  /** Opens an existing store (kernel-made or ours); rejects as {@link loadStore} does and never writes. */
  static async load(device: BlockDevice, options: LoadStoreOptions = {}): Promise<PersistentStore> {
    const loaded = await loadStore(device, options)
    return new PersistentStore(device, loaded.geometry, loaded)
  }

  get valid(): boolean { return this.#valid }
  get chunkSectors(): ChunkSectors { return this.geometry.chunkSectors }
  /** The next COW chunk the allocator would hand out. */
  get nextFreeChunk(): NewChunk { return this.#nextFree }
  /** Metadata areas in use: the kernel's current_area + 1. */
  get metadataAreas(): number { return this.#currentArea + 1 }
  /** Allocations still waiting for their commit. */
  get outstanding(): number { return this.#uncommitted.length - this.#uncommittedHead }

  allocate(): NewChunk | undefined {
    const g = this.geometry
    // §9.4: the chunk must lie wholly inside the device as it is now.
    if (this.device.size < (this.#nextFree + 1) * g.chunkBytes) return undefined
    const chunk = this.#nextFree
    this.#nextFree = g.skipMetadata(chunk + 1)
    this.#uncommitted.push(chunk)
    this.#pendingCount++
    return chunk
  }

  /**
   * Commits one allocation (grouped with others into one area write, as the kernel does). Must be called once per allocation, in allocation order;
   * resolves when its batch is durable, with false if the store is (or became) invalid.
   */
  commit(oldChunk: OldChunk, newChunk: NewChunk, copyOk: boolean): Promise<boolean> {
    const expected = this.#uncommitted[this.#uncommittedHead]
    if (expected !== newChunk) {
      return Promise.reject(new Error(
        `commit of COW chunk ${newChunk} is out of allocation order: chunk ${expected ?? 'none'} must be committed first`))
    }
    this.#uncommittedHead++
    if (this.#uncommittedHead === this.#uncommitted.length) {
      this.#uncommitted.length = 0
      this.#uncommittedHead = 0
    }
    return new Promise((resolve, reject) => {
      this.#commitsQueued++
      this.#io.run(() => this.#commitInOrder(oldChunk, newChunk, copyOk, resolve)).catch(reject)
    })
  }

  async #commitInOrder(oldChunk: OldChunk, newChunk: NewChunk, copyOk: boolean, done: (ok: boolean) => void) {
    const g = this.geometry
    if (!copyOk) this.#valid = false
    writeRecord(this.#areaView, this.#currentCommitted++, oldChunk, newChunk)
    this.#waiting.push(done)
    this.#pendingCount--
    this.#commitsQueued--
    const full = this.#currentCommitted === g.exceptionsPerArea
    // Group commit without lockstep: the kernel waits until no allocation is outstanding,
    // which under a steady load acknowledges writes in bursts. Here the batch is written as
    // soon as no other ready commit is queued behind this one: records that become ready
    // while it is being written go in the next batch. One write at a time (nothing
    // outstanding) writes exactly what the kernel writes.
    if (!full && this.#commitsQueued > 0) {
      // An invalid store writes no batch: say so now instead of waiting.
      if (!this.#valid) for (const callback of this.#waiting.splice(0)) callback(false)
      return
    }
    if (full) {
      // The next area must read as empty before this one is durable (§9.5 step 4).
      try {
        await this.device.write(g.areaLocation(this.#currentArea + 1) * g.chunkBytes, new Uint8Array(g.chunkBytes))
      } catch {
        this.#valid = false
      }
    }
    if (this.#valid) {
      try {
        await this.#writeArea()
      } catch {
        this.#valid = false
      }
    }
    if (full) {
      this.#currentArea++
      this.#currentCommitted = 0
      this.#area.fill(0)
    }
    const ok = this.#valid
    for (const callback of this.#waiting.splice(0)) callback(ok)
  }

  /**
   * The current area, as the kernel writes it: REQ_PREFLUSH (the exceptions' data is durable
   * before the records that point at it) | REQ_FUA (durable before the writes it acknowledges
   * are). A device without forced-unit-access writes is flushed again instead.
   */
  async #writeArea(): Promise<void> {
    const g = this.geometry
    const at = g.areaLocation(this.#currentArea) * g.chunkBytes
    await this.device.flush()
    if (this.device.writeFua !== undefined) return this.device.writeFua(at, this.#area)
    await this.device.write(at, this.#area)
    await this.device.flush()
  }

  /**
   * Marks the store invalid for good: rewrites the header with valid = 0, then flushes,
   * so that a reload can never trust a table the origin has already moved past.
   */
  invalidate(): Promise<void> {
    this.#valid = false
    return this.#io.run(async () => {
      const g = this.geometry
      await this.device.write(0, encodeHeaderChunk(g.chunkBytes, { valid: false, chunkSectors: g.chunkSectors }))
      await this.device.flush()
      // No area is written from now on: commits waiting for a batch are answered now rather
      // than when the last outstanding allocation comes, which may be never (a lost commit).
      for (const callback of this.#waiting.splice(0)) callback(false)
    })
  }

  idle(): Promise<void> {
    return this.#io.run(() => Promise.resolve())
  }

  /** Merge, first step (the kernel's prepare_merge): the last run of consecutive records, or undefined when the table is empty. */
  prepareMerge(): Promise<MergeRun | undefined> {
    return this.#io.run(async () => {
      const g = this.geometry
      if (this.#currentCommitted === 0) {
        if (this.#currentArea === 0) return undefined
        this.#currentArea--
        try {
          await this.device.read(g.areaLocation(this.#currentArea) * g.chunkBytes, this.#area)
        } catch (cause) {
          this.#currentArea++
          throw new SnapcowError('SNAPCOW_IO', `reading metadata area ${this.#currentArea - 1} for a merge failed`, { cause })
        }
        this.#currentCommitted = g.exceptionsPerArea
      }
      const last = readRecord(this.#areaView, this.#currentCommitted - 1)
      let count = 1
      for (; count < this.#currentCommitted; count++) {
        const r = readRecord(this.#areaView, this.#currentCommitted - 1 - count)
        if (r.oldChunk !== last.oldChunk - count || r.newChunk !== last.newChunk - count) break
      }
      return { lastOld: asOldChunk(last.oldChunk), lastNew: asNewChunk(last.newChunk), count }
    })
  }

  /** Merge, last step (the kernel's commit_merge): clears the last `count` records and writes the area durably. */
  commitMerge(count: number): Promise<void> {
    return this.#io.run(async () => {
      if (!Number.isSafeInteger(count) || count < 1 || count > this.#currentCommitted) {
        throw new RangeError(`merge count ${count} is not between 1 and ${this.#currentCommitted}`)
      }
      const before = this.#area.slice()
      for (let i = 0; i < count; i++) clearRecord(this.#area, this.#currentCommitted - 1 - i)
      try {
        await this.#writeArea()
      } catch (cause) {
        this.#area.set(before) // the on-disk table is unchanged as far as we know: keep ours equal
        throw new SnapcowError('SNAPCOW_IO', 'writing the metadata area after a merge batch failed', { cause })
      }
      this.#currentCommitted -= count
      // As the kernel: only the status uses next_free from here on.
      this.#nextFree = asNewChunk(this.geometry.areaLocation(this.#currentArea) + this.#currentCommitted + 1)
    })
  }

  usage(): StoreUsage {
    const cs = this.geometry.chunkSectors
    return {
      allocatedSectors: asSector(this.#nextFree * cs),
      totalSectors: bytesToSectors(this.device.size),
      metadataSectors: asSector((this.#currentArea + 2) * cs),
    }
  }
}
