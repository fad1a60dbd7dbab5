// actors/chunk-pending.ts: one pending exception (spec §3 states B and C): its chunk machine
// run (compiled table or XState actor, machines/chunk-run.ts), its allocation sequence and the
// bios held on it. Exists only while the chunk is Pending or CompletedWithReaders; a Completed
// chunk is one completed-table entry.
import type { ChunkRun } from '../machines/chunk-run.js'
import type { ChunkStateName } from '../machines/chunk.js'
import type { NewChunk, OldChunk } from '../io/units.js'
import type { OriginWriteBio, SnapshotWriteBio } from './bio.js'

export class PendingException {
  readonly originBios: OriginWriteBio[] = []
  readonly snapshotBios: SnapshotWriteBio[] = []
  /** Row 3: the whole-chunk snapshot write that stands in for the copy. */
  fullBio: SnapshotWriteBio | undefined
  newChunk: NewChunk | undefined
  /** Allocation sequence: commits go to the store in this order (spec §6 step 2). */
  sequence = -1
  copyOk = false
  /** Out of the pending table (its machine may still run, under a test fault only). */
  removed = false

  constructor(readonly oldChunk: OldChunk, readonly run: ChunkRun) {}

  get state(): ChunkStateName {
    return this.run.state
  }
}
