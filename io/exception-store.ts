// io/exception-store.ts: what the engine needs from an exception store (spec §8), for the
// persistent (§9) and transient (§10) stores alike.
import type { ChunkSectors, NewChunk, OldChunk, Sector } from './units.js'

/** Space use as `dmsetup status` reports it, in sectors. */
export interface StoreUsage {
  allocatedSectors: Sector
  totalSectors: Sector
  metadataSectors: Sector
}

/**
 * An exception store. Commits must be requested in allocation order, one per allocation.
 * @example
 * const chunk = store.allocate()               // undefined: the COW is full
 * if (chunk !== undefined) ok = await store.commit(old, chunk, true)
 */
export interface ExceptionStore {
  /** 'P' (persistent) or 'N' (transient); the engine adds 'O' for overflow. */
  readonly kind: 'P' | 'N'
  /** Sectors per chunk. */
  readonly chunkSectors: ChunkSectors
  /** False once invalidated (by a failure or `invalidate()`). */
  readonly valid: boolean
  /** Hands out the next free COW chunk, or undefined when none fits on the device. */
  allocate(): NewChunk | undefined
  /** Records `oldChunk → newChunk`; resolves with "ok" once durable (or failed). */
  commit(oldChunk: OldChunk, newChunk: NewChunk, copyOk: boolean): Promise<boolean>
  /** Marks the store invalid (persistently for P). */
  invalidate(): Promise<void>
  /**
   * Resolves once every device request the store has started or queued is done (commits of
   * an invalid store and its `valid = 0` header included). drop() waits for it, so a COW
   * device is never let go with a store write still to come.
   */
  idle(): Promise<void>
  /** Space use for the status line. */
  usage(): StoreUsage
}
