// actors/status.ts: a snapshot's status as `dmsetup status` prints it (spec §14, §18).
import { errorCode } from './journal/replayed-device-error.js'
import type { SnapshotCore } from './snapshot-core.js'

/** A snapshot's state and space use, as `snapshot.status()` reports them. */
export interface SnapshotStatus {
  state: 'active' | 'invalid' | 'overflow' | 'merging' | 'merged' | 'merge-failed'
  allocatedSectors: number
  totalSectors: number
  metadataSectors: number
  /** Exactly what `dmsetup status` prints for the same target. */
  line: string
  /**
   * Set when something needs a person's attention beyond the state: the COW device refused
   * the `valid = 0` header of an invalidation (do not load that COW again: it would claim a
   * valid snapshot whose chunks the origin has since overwritten), or a bug stopped the snapshot.
   */
  warning?: string
}

export function snapshotStatus(s: SnapshotCore, volumeSectors: number): SnapshotStatus {
  const usage = s.store.usage()
  const numbers = { allocatedSectors: usage.allocatedSectors, totalSectors: usage.totalSectors, metadataSectors: usage.metadataSectors }
  const merge = s.merge?.status
  const target = merge === undefined ? 'snapshot' : 'snapshot-merge' // a merging snapshot is a snapshot-merge target
  // The first word that applies (§14): Invalid, Merge failed, Overflow, then the usage.
  const [state, word] = !s.valid ? ['invalid', 'Invalid'] as const
    : merge === 'merge-failed' ? ['merge-failed', 'Merge failed'] as const
    : s.overflowed ? ['overflow', 'Overflow'] as const
    : [merge ?? 'active', `${usage.allocatedSectors}/${usage.totalSectors} ${usage.metadataSectors}`] as const
  const warning = s.invalidationError !== undefined
    // Named by its code, as the journal records it, so a replay reports the same warning.
    ? `the COW device refused the header that marks this snapshot invalid (${errorCode(s.invalidationError)}); ` +
      'its store still says valid: do not load it again, its content is no longer the snapshot'
    : s.internalError !== undefined ? `stopped by an internal error (a bug in snapcow): ${s.internalError.message}` : undefined
  return { state, ...numbers, line: `0 ${volumeSectors} ${target} ${word}`, ...(warning !== undefined ? { warning } : {}) }
}
