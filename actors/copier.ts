// actors/copier.ts: copies origin chunks to COW chunks (spec §6 step 1). The copies one
// origin-write pass starts all cover the same sector, and power-of-two chunks nest, so the
// origin is read once, for the largest chunk, and each snapshot gets its slice. A copy of the
// origin's last, partial chunk is shortened to the origin's end.
import type { BlockDevice } from '../io/block-device.js'
import type { PendingException } from './chunk-pending.js'
import type { SnapshotCore } from './snapshot-core.js'

export interface CopyJob {
  snapshot: SnapshotCore
  pe: PendingException
}

/** Reports each job's outcome; never throws. */
export type CopyDone = (job: CopyJob, ok: boolean) => void

export async function copyChunks(origin: BlockDevice, jobs: readonly CopyJob[], done: CopyDone): Promise<void> {
  let start = Number.POSITIVE_INFINITY
  let end = 0
  for (const { snapshot, pe } of jobs) {
    start = Math.min(start, pe.oldChunk * snapshot.chunkBytes)
    end = Math.max(end, Math.min((pe.oldChunk + 1) * snapshot.chunkBytes, origin.size))
  }
  const bytes = new Uint8Array(end - start)
  try {
    await origin.read(start, bytes)
  } catch {
    for (const job of jobs) done(job, false)
    return
  }
  await Promise.all(jobs.map(async (job) => {
    const { snapshot, pe } = job
    const from = pe.oldChunk * snapshot.chunkBytes - start
    const to = Math.min((pe.oldChunk + 1) * snapshot.chunkBytes, origin.size) - start
    try {
      await snapshot.cow.write(pe.newChunk! * snapshot.chunkBytes, bytes.subarray(from, to))
      done(job, true)
    } catch {
      done(job, false)
    }
  }))
}
