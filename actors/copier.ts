// actors/copier.ts: copies origin chunks to COW chunks (spec §6 step 1). The copies one
// origin-write pass starts all cover the same sector, and power-of-two chunks nest, so the
// origin is read once, for the largest chunk, and each snapshot gets its slice. If that shared
// read fails, each snapshot's chunk is read again on its own before its copy is given up: one
// transient error then invalidates no more snapshots than the kernel's separate reads would.
// A copy of the origin's last, partial chunk is shortened to the origin's end.
import type { BlockDevice } from '../io/block-device.js'
import type { BufferPool } from './buffer-pool.js'
import type { PendingException } from './chunk-pending.js'
import type { SnapshotCore } from './snapshot-core.js'

export interface CopyJob {
  snapshot: SnapshotCore
  pe: PendingException
}

/** Reports each job's outcome; never throws. */
export type CopyDone = (job: CopyJob, ok: boolean) => void

/** The origin byte range [start, end) that a job copies. */
const rangeOf = (origin: BlockDevice, { snapshot, pe }: CopyJob): [number, number] =>
  [pe.oldChunk * snapshot.chunkBytes, Math.min((pe.oldChunk + 1) * snapshot.chunkBytes, origin.size)]

export async function copyChunks(origin: BlockDevice, jobs: readonly CopyJob[], done: CopyDone, pool: BufferPool): Promise<void> {
  let start = Number.POSITIVE_INFINITY
  let end = 0
  for (const job of jobs) {
    const [from, to] = rangeOf(origin, job)
    start = Math.min(start, from)
    end = Math.max(end, to)
  }
  const bytes = pool.take(end - start)
  try {
    await origin.read(start, bytes)
  } catch {
    pool.give(bytes)
    if (jobs.length === 1) return done(jobs[0]!, false)
    await Promise.all(jobs.map((job) => copyAlone(origin, job, done, pool)))
    return
  }
  if (jobs.length === 1) {
    await writeCopy(jobs[0]!, bytes, done)
  } else {
    await Promise.all(jobs.map((job) => {
      const [from, to] = rangeOf(origin, job)
      return writeCopy(job, bytes.subarray(from - start, to - start), done)
    }))
  }
  pool.give(bytes)
}

/** One job with its own origin read: the retry after a shared read failed. */
async function copyAlone(origin: BlockDevice, job: CopyJob, done: CopyDone, pool: BufferPool): Promise<void> {
  const [from, to] = rangeOf(origin, job)
  const bytes = pool.take(to - from)
  try {
    await origin.read(from, bytes)
  } catch {
    pool.give(bytes)
    return done(job, false)
  }
  await writeCopy(job, bytes, done)
  pool.give(bytes)
}

async function writeCopy(job: CopyJob, bytes: Uint8Array, done: CopyDone): Promise<void> {
  try {
    await job.snapshot.cow.write(job.pe.newChunk! * job.snapshot.chunkBytes, bytes)
  } catch {
    return done(job, false)
  }
  done(job, true)
}
