// actors/snapshot-volume.ts: a snapshot as a BlockDevice (architecture rule 6). The volume
// checks every request (DeviceBase) and hands whole requests to the engine, which splits them
// at the snapshot's chunk boundaries (spec §5.6).
import { DeviceBase } from '../io/device-base.js'
import { SnapcowError } from '../io/errors.js'
import type { ByteOffset } from '../io/units.js'
import { asOldChunk, SECTOR_BYTES } from '../io/units.js'
import type { ChunkStateName } from '../machines/chunk.js'
import type { Engine } from './engine.js'
import type { Origin } from './origin-volume.js'
import type { SnapshotCore } from './snapshot-core.js'
import type { SnapshotStatus } from './status.js'
import { snapshotStatus } from './status.js'
import { PersistentStore } from '../io/cow-format/persistent-store.js'
import { invalidError } from './volume-errors.js'
import type { MergeOptions } from './merger.js'
import { failHeldWrites, runMerge } from './merger.js'

/**
 * A snapshot of an origin: reads show the origin as it was when the snapshot was created,
 * plus the snapshot's own writes. Made by `origin.createSnapshot()` or `origin.loadSnapshot()`.
 * @example
 * const snap = await origin.createSnapshot(cow, { chunkSize: 4096 })
 * await origin.write(0, newData)      // the old data is copied to `cow` first
 * await snap.read(0, buffer)          // the old data
 */
export class Snapshot extends DeviceBase {
  readonly id: string
  #name: string
  /** Chunk size in bytes. */
  readonly chunkSize: number
  #dropping: Promise<void> | undefined
  #merging: Promise<void> | undefined
  #mergedAway = false

  /** @internal */
  constructor(/** @internal */ private readonly engine: Engine, /** @internal */ private readonly core: SnapshotCore, size: number,
    /** @internal */ private readonly onDetached: (snapshot: Snapshot) => void, /** @internal */ private readonly origin: Origin) {
    super(size, { flush: true, persistent: false })
    this.id = core.id
    this.#name = core.id
    this.chunkSize = core.chunkBytes
  }

  /** Its stable name (NBD export name, status output): the `name` it was made or loaded with, else its id. */
  get name(): string {
    return this.#name
  }

  /** @internal Gives the snapshot the name its caller asked for (already checked by the origin). */
  named(name: string | undefined): this {
    if (name !== undefined) this.#name = name
    return this
  }

  /**
   * The snapshot's content as ordered runs of bytes: read from its COW device (`inCow`), or
   * through to the origin. Runs cover `[offset, offset + length)` exactly; adjacent runs of the
   * same kind are joined. One pass over the range's chunks, or over the exceptions when there
   * are fewer of them.
   * @example
   * snapshot.extents() // [{ offset: 0, length: 8192, inCow: true }, { offset: 8192, length: …, inCow: false }]
   */
  extents(offset = 0, length = this.size - offset): Array<{ offset: number; length: number; inCow: boolean }> {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.size) throw new RangeError(`extents: offset ${String(offset)} is not inside this ${this.size}-byte snapshot`)
    if (!Number.isSafeInteger(length) || length < 0 || offset + length > this.size) throw new RangeError(`extents: length ${String(length)} at offset ${offset} runs outside this ${this.size}-byte snapshot`)
    this.#checkAttached()
    if (!this.core.valid) throw invalidError(this.core)
    const end = offset + length
    if (length === 0) return []
    const cs = this.chunkSize
    const first = Math.floor(offset / cs)
    const last = Math.floor((end - 1) / cs)
    const table = this.core.completed
    let remapped: number[] = []
    if (last - first + 1 <= 4 * table.size + 1024) {
      for (let c = first; c <= last; c++) if (table.has(asOldChunk(c))) remapped.push(c)
    } else {
      table.forEach((old) => { if (old >= first && old <= last) remapped.push(old) })
      remapped = remapped.sort((a, b) => a - b)
    }
    const runs: Array<{ offset: number; length: number; inCow: boolean }> = []
    const add = (from: number, to: number, inCow: boolean) => {
      const prev = runs[runs.length - 1]
      if (prev !== undefined && prev.inCow === inCow && prev.offset + prev.length === from) prev.length += to - from
      else runs.push({ offset: from, length: to - from, inCow })
    }
    let at = offset
    for (const c of remapped) {
      const from = Math.max(c * cs, offset)
      const to = Math.min((c + 1) * cs, end)
      if (from > at) add(at, from, false)
      add(from, to, true)
      at = to
    }
    if (at < end) add(at, end, false)
    return runs
  }

  /** The state and the `dmsetup status` line. */
  status(): SnapshotStatus {
    return snapshotStatus(this.core, this.size / SECTOR_BYTES)
  }

  /** The exception state of one chunk (in this snapshot's chunk units). */
  chunkState(chunk: number): ChunkStateName {
    if (!Number.isSafeInteger(chunk) || chunk < 0 || chunk * this.chunkSize >= this.size) {
      throw new RangeError(`chunk ${String(chunk)} is not a chunk of this ${this.size}-byte snapshot`)
    }
    return this.core.stateOf(asOldChunk(chunk))
  }

  /**
   * Detaches the snapshot without merging: new I/O to it rejects, what is in flight finishes,
   * then later origin writes no longer copy for it. It resolves once the store has nothing
   * left to write either (an Invalid snapshot's `valid = 0` header is durable by then), so the
   * COW device can be closed at once. Its COW device keeps a store that `loadSnapshot` can open
   * again (valid unless the snapshot went Invalid). The COW device is not closed. Refused (SNAPCOW_MERGING)
   * while its merge runs, or once a merge stopped or failed part way: the origin then reads
   * through this snapshot's COW, so detaching it would lose what the origin shows; run
   * `merge()` again to finish.
   */
  drop(): Promise<void> {
    const merge = this.core.merge
    if (this.#dropping === undefined && (this.#merging !== undefined || this.engine.mergeReserved === this.core ||
      (merge !== undefined && merge.status !== 'merged'))) {
      const how = this.#merging !== undefined ? 'is being merged' : merge?.status === 'merge-failed' ? 'failed to merge part way' : 'was stopped part way through its merge'
      return Promise.reject(new SnapcowError('SNAPCOW_MERGING',
        `snapshot ${this.id} ${how}: the origin reads through its COW until the merge finishes, so it cannot be dropped; run merge() again to finish it`))
    }
    return this.#detach()
  }

  /** @internal The origin is closing: detach even a snapshot whose merge stopped (its store keeps the merge's progress). */
  closeWithOrigin(): Promise<void> {
    return this.#detach()
  }

  #detach(): Promise<void> {
    this.#dropping ??= this.origin.inputs.request((bio) => ({ type: 'drop', bio, snapshot: this.id }), async () => {
      // As the kernel removes a snapshot with its origin suspended: no new origin write may
      // start an exception here while the ones in flight finish.
      await this.engine.admission.quiesce()
      try {
        await this.core.whenSettled()
        this.engine.detach(this.core)
      } finally {
        this.engine.admission.resume()
      }
      this.onDetached(this)
    })
    return this.#dropping
  }

  /**
   * Merges the snapshot into its origin, online: origin I/O and the other snapshots
   * keep working, and while it runs the origin (and this volume) read as the snapshot does.
   * Resolves when the origin holds the snapshot's content and the COW's table is empty; the
   * snapshot is then `merged` and detached. Stopped by `signal` between batches, it rejects
   * and stays `merging`: call merge() again (or loadSnapshot, then merge(), after a restart)
   * to go on from the on-disk table.
   * @example
   * await snapshot.merge({ onProgress: ({ merged, total }) => console.log(`${merged}/${total}`) })
   */
  merge(options: MergeOptions = {}): Promise<void> {
    this.#merging ??= this.origin.inputs.request((bio) => ({ type: 'merge', bio, snapshot: this.id }), () => this.#runMerge(options))
      .finally(() => { this.#merging = undefined })
    return this.#merging
  }

  async #runMerge(options: MergeOptions): Promise<void> {
    this.#checkAttached()
    const core = this.core
    if (!(core.store instanceof PersistentStore)) throw new TypeError('a transient snapshot (N) cannot be merged: it has no store to merge from')
    if (!core.valid) throw invalidError(core)
    const other = this.engine.merging ?? this.engine.mergeReserved
    if (other !== undefined && other !== core) {
      throw new SnapcowError('SNAPCOW_MERGING', `snapshot ${other.id} of this origin is being merged already: one merge at a time`)
    }
    if (core.merge === undefined) {
      // Reserved at once, so a second merge() started meanwhile is refused (spec §15).
      this.engine.mergeReserved = core
      // The handover (spec §17): no origin write and none of this snapshot's exceptions in flight.
      await this.engine.admission.quiesce()
      try {
        await core.whenQuiet()
        core.merge = { status: 'merging', batchFirst: 0, batchCount: 0, held: [], drainWaiters: [] }
      } finally {
        this.engine.mergeReserved = undefined
        this.engine.admission.resume()
      }
    }
    core.merge.status = 'merging'
    try {
      await runMerge(this.engine, core, core.store, options)
    } catch (error) {
      if (!(options.signal?.aborted ?? false)) {
        core.merge.status = 'merge-failed'
        failHeldWrites(core, new SnapcowError('SNAPCOW_MERGE_FAILED', `merging snapshot ${this.id} failed: ${String(error)}`, { cause: error }))
      }
      throw error
    }
    core.merge.status = 'merged'
    this.#mergedAway = true
    this.engine.detach(core)
    this.onDetached(this)
  }

  protected override _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    if (this.origin.recorder === undefined) return this.#read(offset, into)
    return this.origin.volumeRequest(this.id, 'read', offset, into, () => this.#read(offset, into))
  }

  protected override _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    if (this.origin.recorder === undefined) return this.#write(offset, data)
    return this.origin.volumeRequest(this.id, 'write', offset, data, () => this.#write(offset, data))
  }

  #read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    const refused = this.#detachedError()
    if (refused !== undefined) return Promise.reject(refused)
    if (this.core.merge !== undefined) return this.engine.readOrigin(offset, into) // the merging volume
    this.core.ioInFlight++ // merge() and drop() wait for this snapshot's I/O in flight
    return this.engine.readSnapshot(this.core, offset, into).then(this.#ioDone, this.#ioFailed)
  }

  #write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    const refused = this.#detachedError()
    if (refused !== undefined) return Promise.reject(refused)
    // Wait for admission before counting as in flight: merge() and drop() close admission
    // and then wait for this snapshot's I/O in flight to finish.
    if (this.engine.admission.closed) return this.engine.admission.whenOpen().then(() => this.#write(offset, data))
    if (this.core.merge !== undefined) return this.engine.writeOrigin(offset, data) // the merging volume
    this.core.ioInFlight++
    return this.engine.writeSnapshot(this.core, offset, data).then(this.#ioDone, this.#ioFailed)
  }

  // Made once per volume, so that counting a request in flight allocates no closure.
  readonly #ioDone = (): void => {
    this.core.ioInFlight--
    this.core.settled()
  }

  readonly #ioFailed = (error: unknown): never => {
    this.#ioDone()
    throw error
  }

  /** A flush of a snapshot goes to its COW device (as in the kernel); of a merging one, to both devices. */
  protected override _flush(): Promise<void> {
    if (this.origin.recorder === undefined) return this.#flush()
    return this.origin.volumeRequest(this.id, 'flush', 0, undefined, () => this.#flush())
  }

  #flush(): Promise<void> {
    return this.core.merge !== undefined ? this.engine.flushOrigin() : this.core.cow.flush()
  }

  /** Closing a snapshot volume drops it (see drop()). */
  protected override _close(): Promise<void> {
    return this.drop()
  }

  #checkAttached(): void {
    const refused = this.#detachedError()
    if (refused !== undefined) throw refused
  }

  #detachedError(): SnapcowError | undefined {
    if (this.#mergedAway) return new SnapcowError('SNAPCOW_DETACHED', `snapshot ${this.id} has been merged into its origin: read the origin`)
    if (this.#dropping !== undefined) return new SnapcowError('SNAPCOW_DETACHED', `snapshot ${this.id} has been dropped: its reads and writes fail`)
    return undefined
  }
}
