// actors/merging-volume.ts: I/O of the merging volume, which stands in for the origin while
// a snapshot is merged (spec §12 table): chunks that still have an exception are read from
// the COW; writes to them go to the COW (tracked), or wait if the chunk is in the batch.
import type { ByteOffset, OldChunk } from '../io/units.js'
import type { BlockDevice } from '../io/block-device.js'
import { newBioId } from './bio.js'
import type { SnapshotCore } from './snapshot-core.js'
import { forEachPiece } from './pieces.js'

/**
 * Spec §12, a write to the merging volume where the chunk still has an exception: held if
 * the chunk is in the batch being merged, else written to the COW and tracked.
 */
export function writeMergingChunk(s: SnapshotCore, chunk: OldChunk, newChunk: number, offset: ByteOffset, data: Uint8Array): Promise<void> {
  const merge = s.merge!
  if (chunk >= merge.batchFirst && chunk < merge.batchFirst + merge.batchCount) {
    return new Promise((resolve, reject) => {
      merge.held.push({ kind: 'origin-write', id: newBioId(), offset, data,
        done: (error) => (error === undefined ? resolve() : reject(error)) })
    })
  }
  s.reads.track(chunk)
  return s.cow.write(newChunk * s.chunkBytes + (offset - chunk * s.chunkBytes), data).finally(() => {
    s.reads.untrack(chunk)
    for (const wake of merge.drainWaiters.splice(0)) wake()
  })
}

/** A read of the merging volume, split at the merging snapshot's chunks. */
export function readMergingVolume(origin: BlockDevice, s: SnapshotCore, offset: number, into: Uint8Array): Promise<void> {
  return forEachPiece(offset, into, s.chunkBytes, readMergingPiece, { origin, s })
}

function readMergingPiece({ origin, s }: { origin: BlockDevice; s: SnapshotCore }, offset: ByteOffset, piece: Uint8Array): Promise<void> {
  const chunk = s.chunkOf(offset)
  const newChunk = s.completed.get(chunk)
  return newChunk === undefined ? origin.read(offset, piece) : s.cow.read(newChunk * s.chunkBytes + (offset - chunk * s.chunkBytes), piece)
}
