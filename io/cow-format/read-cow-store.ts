// io/cow-format/read-cow-store.ts: the public, read-only view of a persistent store (api.md,
// "Store format"). It loads exactly as loadSnapshot does and rejects what it rejects.
import type { BlockDevice } from '../block-device.js'
import type { NewChunk, OldChunk } from '../units.js'
import { loadStore } from './load-store.js'

/** What a persistent COW store holds, as `readCowStore` reports it. */
export interface CowStoreInfo {
  /** Header valid flag. */
  valid: boolean
  /** Always 1. */
  version: number
  /** Chunk size in 512-byte sectors, from the header. */
  chunkSectors: number
  /** `[oldChunk, newChunk]` in table order (empty for an invalid store unless `scanInvalid`). */
  exceptions: Array<[oldChunk: number, newChunk: number]>
  /** The next COW chunk the allocator would hand out. */
  nextFreeChunk: number
  /** Metadata areas in use (the kernel's current_area + 1). */
  metadataAreas: number
}

/** Options of {@link readCowStore}. */
export interface ReadCowStoreOptions {
  /**
   * Also read the table of a store whose header says invalid. Linux and loadSnapshot do not;
   * this is for forensics (which chunks did it hold before it was invalidated?).
   */
  scanInvalid?: boolean
  /**
   * The origin's size in bytes, to check the store against it as loadSnapshot does: a record
   * past the origin's last chunk is refused (`SNAPCOW_CORRUPT_TABLE`). Without it, no such check.
   */
  originSize?: number
}

/**
 * Reads a persistent COW store, a kernel-made one as well, and never writes to the device.
 * Rejects with a CowFormatError naming the field and value (foreign magic, version,
 * chunk size, a corrupt record, a device too small) or a SnapcowError (`SNAPCOW_IO`).
 * @example
 * const info = await readCowStore(await FileDevice.open('cow.img', { readOnly: true }))
 * console.log(info.valid, info.chunkSectors, info.exceptions.length)
 */
export async function readCowStore(cow: BlockDevice, options: ReadCowStoreOptions = {}): Promise<CowStoreInfo> {
  const { originSize } = options
  if (originSize !== undefined && (typeof originSize !== 'number' || !Number.isSafeInteger(originSize) || originSize < 0)) {
    throw new RangeError(`readCowStore: originSize ${String(originSize)} is not a non-negative whole number of bytes`)
  }
  const exceptions: Array<[number, number]> = []
  const loaded = await loadStore(cow, {
    scanInvalid: options.scanInvalid === true,
    ...(originSize === undefined ? {} : { originBytes: originSize }),
    onException: (oldChunk: OldChunk, newChunk: NewChunk) => { exceptions.push([oldChunk, newChunk]) },
  })
  return {
    valid: loaded.valid,
    version: 1,
    chunkSectors: loaded.geometry.chunkSectors,
    exceptions,
    nextFreeChunk: loaded.nextFree,
    metadataAreas: loaded.currentArea + 1,
  }
}
