// actors/snapshot-core.ts: everything the engine keeps for one snapshot: its store, its two
// exception tables (spec §3: completed entries, pending actors), its tracked reads, its
// validity (§13) and the allocation-order commit queue (§6 step 2, the kernel's
// out-of-order tree).
import type { BlockDevice } from '../io/block-device.js'
import type { ExceptionStore } from '../io/exception-store.js'
import type { ChunkSectors, NewChunk, OldChunk } from '../io/units.js'
import { asOldChunk, SECTOR_BYTES } from '../io/units.js'
import type { ChunkStateName } from '../machines/chunk.js'
import type { OriginWriteBio } from './bio.js'
import type { PendingException } from './chunk-pending.js'
import { CompletedTable } from './completed-table.js'
import { ReadTracker } from './read-tracker.js'

/** A merge in progress (spec §12). */
export interface MergeState {
  status: 'merging' | 'merged' | 'merge-failed'
  /** The batch being merged: origin chunks [first, first + count). Writes to it are held. */
  batchFirst: number
  batchCount: number
  /** Writes to the batch, released to the origin once the batch is committed. */
  readonly held: OriginWriteBio[]
  /** Resolvers waiting for tracked COW writes of the batch to finish (step 5). */
  readonly drainWaiters: Array<() => void>
}

export class SnapshotCore {
  readonly chunkBytes: number
  /** The pending table (spec §3): chunks in Pending or CompletedWithReaders. */
  readonly pending = new Map<number, PendingException>()
  /** Live chunk actors by chunk; the same as `pending` unless a test fault says otherwise. */
  readonly live = new Map<number, PendingException>()
  /** Snapshot reads and writes accepted and not yet finished. */
  ioInFlight = 0
  readonly #quietWaiters: Array<() => void> = []
  readonly reads = new ReadTracker()
  valid: boolean
  overflowed = false
  /** Detached by drop(): origin writes no longer copy for it, its I/O rejects. */
  detached = false
  /** The header rewrite of an invalidation, once started (origin writes wait for it). */
  invalidation: Promise<void> | undefined
  /** Why it became invalid, for errors and status. */
  invalidReason: string | undefined
  /** The `valid = 0` header could not be written (every attempt failed): the store is unusable. */
  invalidationError: Error | undefined
  /** A bug found in this snapshot's store (e.g. a commit out of order): its I/O fails with SNAPCOW_INTERNAL. */
  internalError: Error | undefined
  copiesInFlight = 0
  /** Set once merge() has taken this snapshot over as the origin's merging volume (spec §12). */
  merge: MergeState | undefined
  #nextSequence = 0
  #commitSequence = 0
  readonly #copiedOutOfOrder = new Map<number, PendingException>()

  constructor(
    readonly id: string,
    readonly cow: BlockDevice,
    readonly store: ExceptionStore,
    readonly chunkSectors: ChunkSectors,
    readonly overflowAllowed: boolean,
    /** Activation order: ties in chunk size are visited earlier-first (spec §5.2). */
    readonly activation: number,
    /** The completed table (spec §3), filled from the store when loaded (row 20). */
    readonly completed: CompletedTable = new CompletedTable(),
  ) {
    this.chunkBytes = chunkSectors * SECTOR_BYTES
    this.valid = store.valid
  }

  chunkOf(offsetBytes: number): OldChunk {
    return asOldChunk(Math.floor(offsetBytes / this.chunkBytes))
  }

  /** Takes part in origin writes (spec §5.2 step 1). */
  get participates(): boolean {
    return this.valid && !this.detached && this.merge === undefined
  }

  /** True while this snapshot's COW stands in for the origin (merging or merge failed). */
  get redirectsOrigin(): boolean {
    return this.merge !== undefined && this.merge.status !== 'merged' && this.valid
  }

  stateOf(chunk: number): ChunkStateName {
    const pe = this.pending.get(chunk)
    if (pe !== undefined) return pe.state
    return this.completed.has(asOldChunk(chunk)) ? 'Completed' : 'None'
  }

  /** Resolves once no chunk is pending and no snapshot I/O is in flight. */
  async whenQuiet(): Promise<void> {
    while (this.live.size > 0 || this.ioInFlight > 0) await new Promise<void>((resolve) => this.#quietWaiters.push(resolve))
  }

  /**
   * Quiet, and the store has nothing left to write either: the `valid = 0` header of an
   * invalidation (with its retries) and the commits of exceptions whose origin writes an
   * invalidation let go on. Before this, the COW device must not be let go.
   */
  async whenSettled(): Promise<void> {
    await this.whenQuiet()
    await this.invalidation
    await this.store.idle()
  }

  /** Wakes whenQuiet() after an exception or an I/O finished. */
  settled(): void {
    if (this.live.size === 0 && this.ioInFlight === 0) for (const resolve of this.#quietWaiters.splice(0)) resolve()
  }

  /** Gives a new pending exception its allocation sequence. */
  sequence(pe: PendingException, newChunk: NewChunk): void {
    pe.newChunk = newChunk
    pe.sequence = this.#nextSequence++
  }

  /**
   * Row 9: a copy finished. Returns the exceptions that may now be handed to the store, in
   * allocation order (none if an older allocation is still copying).
   */
  copyFinished(pe: PendingException, ok: boolean): PendingException[] {
    pe.copyOk = ok
    if (pe.sequence !== this.#commitSequence) {
      this.#copiedOutOfOrder.set(pe.sequence, pe)
      return []
    }
    const ready = [pe]
    this.#commitSequence++
    for (let next = this.#copiedOutOfOrder.get(this.#commitSequence); next !== undefined;
      next = this.#copiedOutOfOrder.get(this.#commitSequence)) {
      this.#copiedOutOfOrder.delete(this.#commitSequence)
      ready.push(next)
      this.#commitSequence++
    }
    return ready
  }
}
