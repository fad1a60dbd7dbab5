// actors/bio.ts: the requests the engine routes, one chunk piece each (spec §5.6: volumes
// split I/O so no piece crosses a chunk boundary). A bio is only allocated on the slow path,
// when a write must wait on a pending exception.
import type { HeldBio } from '../machines/chunk.js'
import type { ByteOffset } from '../io/units.js'

/** A piece of an origin write: `data` lands at `offset` on the origin once every snapshot is safe. */
export interface OriginWriteBio extends HeldBio {
  readonly kind: 'origin-write'
  readonly offset: ByteOffset
  readonly data: Uint8Array
  /** Called once, with an error if the write failed. */
  readonly done: (error?: Error) => void
}

/** A piece of a snapshot write (offset on the snapshot volume). */
export interface SnapshotWriteBio extends HeldBio {
  readonly kind: 'snapshot-write'
  readonly offset: ByteOffset
  readonly data: Uint8Array
  readonly done: (error?: Error) => void
}

let nextBioId = 1
/** @internal Bio ids are unique per process; the journal names bios by them. */
export const newBioId = (): number => nextBioId++
