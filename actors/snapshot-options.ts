// actors/snapshot-options.ts: checks createSnapshot's arguments against spec §15 before any
// I/O. Misuse is a RangeError or TypeError naming the value.
import type { BlockDevice } from '../io/block-device.js'
import { chunkSectorsProblem } from '../io/cow-format/chunk-size.js'
import type { ChunkSectors } from '../io/units.js'
import { asChunkSectors, SECTOR_BYTES } from '../io/units.js'

/** Options of `Origin.createSnapshot`. */
export interface CreateSnapshotOptions {
  /** Bytes, a power of two from 512 to 1 GiB; default 4096. */
  chunkSize?: number
  /** Default true: Linux dm-snapshot's 'P' format on the COW device; false: transient 'N'. */
  persistent?: boolean
  /** Persistent only: the kernel's 'PO' store (a full COW on a snapshot write is Overflow, not Invalid). */
  overflow?: boolean
  /** A stable name (NBD export name, status output); default: the snapshot's id, snap-<n>. */
  name?: string
}

export interface CheckedSnapshotOptions {
  chunkSectors: ChunkSectors
  persistent: boolean
  overflow: boolean
}

export const DEFAULT_CHUNK_BYTES = 4096

export function checkSnapshotOptions(options: CreateSnapshotOptions = {}): CheckedSnapshotOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError(`createSnapshot options must be an object, got ${String(options)}`)
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_BYTES
  if (typeof chunkSize !== 'number') {
    throw new TypeError(`chunkSize must be a number of bytes, got ${typeof chunkSize} ${typeof chunkSize === 'string' ? JSON.stringify(chunkSize) : String(chunkSize)}`)
  }
  if (!Number.isSafeInteger(chunkSize) || chunkSize % SECTOR_BYTES !== 0) {
    throw new RangeError(`chunkSize ${String(chunkSize)} is not a whole number of 512-byte sectors`)
  }
  const problem = chunkSectorsProblem(chunkSize / SECTOR_BYTES)
  if (problem !== undefined) throw new RangeError(`chunkSize ${chunkSize} bytes (${chunkSize / SECTOR_BYTES} sectors) ${problem}`)
  const persistent = options.persistent ?? true
  const overflow = options.overflow ?? false
  if (typeof persistent !== 'boolean') throw new TypeError(`persistent must be a boolean, got ${String(persistent)}`)
  if (typeof overflow !== 'boolean') throw new TypeError(`overflow must be a boolean, got ${String(overflow)}`)
  if (overflow && !persistent) {
    throw new TypeError('overflow: true needs a persistent store (the kernel\'s PO); a transient store (N) has no overflow mode')
  }
  return { chunkSectors: asChunkSectors(chunkSize / SECTOR_BYTES), persistent, overflow }
}

/** Spec §15: the COW device must be a device, and neither the origin nor another snapshot's COW. */
export function checkCowDevice(cow: BlockDevice, origin: BlockDevice, otherCows: readonly BlockDevice[]): void {
  if (typeof cow !== 'object' || cow === null || typeof cow.read !== 'function' || typeof cow.write !== 'function') {
    throw new TypeError(`the COW device must be a BlockDevice, got ${String(cow)}`)
  }
  if (cow === origin) throw new TypeError('the COW device is the origin device: a snapshot needs a device of its own')
  if (otherCows.includes(cow)) throw new TypeError('the COW device already belongs to another snapshot of this origin')
}
