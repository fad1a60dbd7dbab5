// actors/merger.ts: merging a snapshot back into its origin, one batch at a time (spec §12,
// §9.8): the other snapshots get their copies first, writes to the batch are held, the batch
// is copied COW → origin in one I/O, the origin is flushed, and only then are the records
// cleared on disk and the chunks dropped from the table. Stopping or crashing between batches
// leaves a valid store; a later merge() resumes from the on-disk table.
import { SnapcowError } from '../io/errors.js'
import type { PersistentStore } from '../io/cow-format/persistent-store.js'
import { asOldChunk } from '../io/units.js'
import type { Engine } from './engine.js'
import { invalidError } from './volume-errors.js'
import type { SnapshotCore } from './snapshot-core.js'

/** Options of `snapshot.merge()`. */
export interface MergeOptions {
  /** Called after each batch is committed, and once at the start; the last call has merged === total. */
  onProgress?: (progress: { merged: number; total: number }) => void
  /** Stops the merge between batches; merge() then rejects with the signal's reason. */
  signal?: AbortSignal
}

/** Runs the merge loop until the table is empty; `s.merge` is set by the caller. */
export async function runMerge(engine: Engine, s: SnapshotCore, store: PersistentStore, options: MergeOptions): Promise<void> {
  const merge = s.merge!
  const total = s.completed.size
  let merged = 0
  options.onProgress?.({ merged, total })
  for (;;) {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('merge stopped')
    if (!s.valid) throw invalidError(s)
    const run = await store.prepareMerge() // §12 step 2
    if (run === undefined) break
    const firstOld = run.lastOld - run.count + 1
    const firstNew = run.lastNew - run.count + 1
    for (let i = 0; i < run.count; i++) {
      if (s.completed.get(asOldChunk(firstOld + i)) !== firstNew + i) {
        throw new SnapcowError('SNAPCOW_CORRUPT_TABLE',
          `merge: the on-disk record for origin chunk ${firstOld + i} does not match the snapshot's table`)
      }
    }
    const start = firstOld * s.chunkBytes
    const end = Math.min((firstOld + run.count) * s.chunkBytes, engine.origin.size)
    await letOtherSnapshotsCopy(engine, s, start, end) // step 3
    merge.batchFirst = firstOld // step 4: writes to the batch are held from here
    merge.batchCount = run.count
    await drainTrackedWrites(s, firstOld, run.count) // step 5
    const bytes = new Uint8Array(end - start) // step 6: one I/O, shortened at the origin's end
    await s.cow.read(firstNew * s.chunkBytes, bytes)
    await engine.writeOriginDevice(start, bytes) // through the gate every origin write passes
    await engine.origin.flush() // step 7: the origin is durable before the records go
    await store.commitMerge(run.count) // step 8
    for (let i = run.count - 1; i >= 0; i--) s.completed.delete(asOldChunk(firstOld + i)) // step 9, last first
    merge.batchCount = 0
    for (const bio of merge.held.splice(0)) engine.resubmitOriginWrite(bio)
    merged += run.count
    options.onProgress?.({ merged, total })
  }
}

/**
 * §12 step 3: the origin-write protocol without a bio on the other snapshots, for every step
 * of the smallest chunk size in the batch's range, until none of them has anything pending there.
 */
async function letOtherSnapshotsCopy(engine: Engine, s: SnapshotCore, start: number, end: number): Promise<void> {
  const others = () => engine.snapshots.filter((o) => o !== s && o.participates)
  for (;;) {
    const list = others()
    if (list.length === 0) return
    // The smallest chunk size of all, the merging one included: the batch starts on one of
    // its boundaries, so every step lands in each overlapping chunk of every snapshot.
    const step = Math.min(s.chunkBytes, ...list.map((o) => o.chunkBytes))
    let pending = false
    for (let at = start; at < end; at += step) {
      engine.originPass(at, undefined)
      for (const o of others()) if (o.pending.has(o.chunkOf(at))) pending = true
    }
    if (!pending) return
    await engine.exceptionFinished()
  }
}

async function drainTrackedWrites(s: SnapshotCore, first: number, count: number): Promise<void> {
  const busy = () => { for (let c = first; c < first + count; c++) if (s.reads.count(c) > 0) return true; return false }
  while (busy()) await new Promise<void>((resolve) => s.merge!.drainWaiters.push(resolve))
}

/** Fails the writes held on the batch (a merge error, spec §12). */
export function failHeldWrites(s: SnapshotCore, error: Error): void {
  const merge = s.merge
  if (merge === undefined) return
  merge.batchCount = 0
  for (const bio of merge.held.splice(0)) bio.done(error)
}
