// test/faults/workloads.ts: the fixed workloads the fault tests run at every I/O position:
// first writes with group commit, an area rolling over, snapshot writes, an invalidation, a merge.
import type { Run, Workload } from './fault-rig.js'

const K = 4096

/** Two persistent snapshots of different chunk sizes and a transient one; concurrent first writes commit in groups. */
export const groupCommit: Workload = {
  name: 'first writes with group commit',
  async setup(run: Run) {
    await run.openOrigin(32 * K, 1)
    await run.snapshot('s4k', 40 * K, { chunkSize: K })
    await run.snapshot('s8k', 40 * K, { chunkSize: 2 * K })
    await run.snapshot('t4k', 32 * K, { chunkSize: K, persistent: false })
  },
  async body(run: Run) {
    // Concurrent first writes to distinct chunks: their records commit together.
    await Promise.all([0, 3, 5, 6, 9, 12].map((c, i) => run.write('origin', c * K, K, 10 + i)))
    await Promise.all([
      run.read('s4k', 3 * K, K), run.read('s8k', 4 * K, 2 * K), run.read('t4k', 0, 2 * K),
      run.write('origin', 20 * K + 512, 1024, 20), // a partial write: the copy reads the whole chunk
      run.read('origin', 8 * K, 2 * K),
    ])
    await run.flush('origin')
    await run.write('origin', 3 * K, K, 21) // chunk 3 is Completed in every snapshot now
    await run.read('s8k', 2 * K, 2 * K)
  },
}

/** 512-byte chunks: 32 records fill an area, so 40 first writes roll over into the next area. */
export const areaRollover: Workload = {
  name: 'an area rolling over',
  async setup(run: Run) {
    await run.openOrigin(48 * 512, 2)
    await run.snapshot('small', 100 * 512, { chunkSize: 512 })
  },
  async body(run: Run) {
    await Promise.all(Array.from({ length: 20 }, (_, i) => run.write('origin', i * 512, 512, 30)))
    await Promise.all(Array.from({ length: 20 }, (_, i) => run.write('origin', (20 + i) * 512, 512, 31)))
    await run.read('small', 28 * 512, 8 * 512)
    await run.read('small', 0, 48 * 512)
  },
}

/** Snapshot writes: partial (a copy first), whole-chunk (no copy), to Completed chunks, across chunks, and reads of the COW. */
export const snapshotWrites: Workload = {
  name: 'snapshot writes',
  async setup(run: Run) {
    await run.openOrigin(24 * K, 3)
    await run.snapshot('s', 32 * K, { chunkSize: K })
    await run.snapshot('other', 32 * K, { chunkSize: 2 * K })
  },
  async body(run: Run) {
    await Promise.all([
      run.write('s', 1 * K + 512, 512, 40), // partial: copy, then the write
      run.write('s', 4 * K, K, 41), // whole chunk: the write is the copy
      run.write('s', 7 * K + 1024, 2 * K, 42), // two chunks, each partial
    ])
    await run.write('s', 4 * K + 1024, 512, 43) // to a Completed chunk: straight to the COW
    await run.write('origin', 4 * K, K, 44) // `s` has chunk 4 already; `other` copies
    await Promise.all([run.read('s', 0, 10 * K), run.read('other', 4 * K, 2 * K)])
    await run.flush('s')
    await run.read('s', 4 * K, K)
  },
}

/** A COW with room for two data chunks fills on an origin write and is invalidated; a roomy snapshot goes on. */
export const invalidation: Workload = {
  name: 'invalidation',
  async setup(run: Run) {
    await run.openOrigin(16 * K, 4)
    await run.snapshot('full', 4 * K, { chunkSize: K }) // header, area 0, two data chunks
    await run.snapshot('roomy', 24 * K, { chunkSize: K })
  },
  async body(run: Run) {
    await Promise.all([run.write('origin', 1 * K, K, 50), run.write('origin', 2 * K, K, 51)])
    await run.write('origin', 5 * K, K, 52) // no room in `full`: Invalid; the write completes
    await run.write('origin', 6 * K, K, 53)
    await Promise.all([run.read('full', 0, K), run.read('roomy', 0, 8 * K)])
  },
}

/** A merge of a snapshot with its own writes, while another snapshot must get its copies first. */
export const merge: Workload = {
  name: 'merge',
  async setup(run: Run) {
    await run.openOrigin(16 * K, 5)
    await run.snapshot('merged', 24 * K, { chunkSize: K })
    await run.snapshot('bystander', 24 * K, { chunkSize: K })
    for (const c of [2, 3, 4, 9]) await run.write('merged', c * K, K, 60 + c) // runs of 3 and 1
    await run.write('origin', 9 * K, K, 70) // `bystander` copies chunk 9; `merged` has it
  },
  async body(run: Run) {
    const merging = run.merge('merged')
    await run.mergeStarted('merged') // I/O issued during the handover may see the origin before or after it
    // During the merge the origin reads as the snapshot; writes to a batch wait for it, others go on.
    await Promise.all([merging, run.write('origin', 3 * K, K, 80), run.write('origin', 12 * K, K, 81), run.read('origin', 8 * K, 2 * K)])
    await run.read('origin', 0, 16 * K)
    await run.read('bystander', 0, 16 * K)
  },
}
