// io/cow-format/load-store.ts: reads a persistent store from a COW device (spec §9.6) and
// checks every field and record. It only reads. What it rejects, and why (docs/cow-format.md):
// zero magic (no store yet), a foreign magic, a version other than 1, an illegal chunk size,
// a device too small for its own table, and any record that would send a snapshot read
// somewhere wrong: a new_chunk that is a metadata chunk, lies past the device's end or is
// used twice, an old_chunk remapped twice, or a chunk number too large to represent; and, when
// told the origin's size or the expected chunk size, a store made for another origin.
import type { BlockDevice } from '../block-device.js'
import { CowFormatError, SnapcowError } from '../errors.js'
import type { NewChunk, OldChunk } from '../units.js'
import { asNewChunk, asOldChunk, SECTOR_BYTES } from '../units.js'
import { chunkSectorsProblem, legalChunkSectors } from './chunk-size.js'
import type { CowGeometry } from './geometry.js'
import { cowGeometry, FIRST_DATA_CHUNK, RECORD_BYTES } from './geometry.js'
import { decodeHeader, HEADER_BYTES, SNAPSHOT_DISK_VERSION, SNAPSHOT_MAGIC } from './header.js'
import { ChunkSet } from './chunk-set.js'
import { isTerminator, readNewChunk, readOldChunk } from './record-io.js'

/** What a load found: enough to go on appending to the store. */
export interface LoadedStore {
  geometry: CowGeometry
  /** Header valid flag (non-zero on disk). */
  valid: boolean
  /** Area the next commit goes to (the kernel's current_area). */
  currentArea: number
  /** Next free slot in that area (the kernel's current_committed). */
  currentCommitted: number
  /** Next chunk the allocator hands out. */
  nextFree: NewChunk
  /** The current area's bytes; every slot from `currentCommitted` on is zero. */
  area: Uint8Array
  /** Records read (0 for an invalid store unless `scanInvalid`). */
  exceptionCount: number
}

export interface LoadStoreOptions {
  /** Called for every record, in table order. */
  onException?: (oldChunk: OldChunk, newChunk: NewChunk) => void
  /** Also read the table of a store whose header says invalid (the kernel does not). */
  scanInvalid?: boolean
  /**
   * The origin's size in bytes: refuse a record whose old_chunk lies past the origin's last
   * chunk (a store made for a bigger origin). The format has no field naming its origin.
   */
  originBytes?: number
  /** The chunk size in sectors the caller expects: refuse a header that says otherwise. */
  chunkSectors?: number
}

/** Loads and checks a persistent store; throws CowFormatError or SnapcowError, never writes. */
export async function loadStore(device: BlockDevice, options: LoadStoreOptions = {}): Promise<LoadedStore> {
  if (device.size < SECTOR_BYTES) {
    throw new CowFormatError('SNAPCOW_COW_TOO_SMALL', 'size', device.size,
      `COW device of ${device.size} bytes is too small to hold a snapshot header`)
  }
  const first = new Uint8Array(SECTOR_BYTES)
  await readOrFail(device, 0, first, 'the header')
  const header = decodeHeader(first.subarray(0, HEADER_BYTES))
  if (header.magic === 0) {
    throw new CowFormatError('SNAPCOW_NO_STORE', 'magic', 0,
      'COW device has no snapshot store (magic is 0): create one with createSnapshot, not loadSnapshot')
  }
  if (header.magic !== SNAPSHOT_MAGIC) {
    throw new CowFormatError('SNAPCOW_BAD_MAGIC', 'magic', hex(header.magic),
      `COW device has a foreign header: magic ${hex(header.magic)} is not "SnAp" (0x70416e53)`)
  }
  if (header.version !== SNAPSHOT_DISK_VERSION) {
    throw new CowFormatError('SNAPCOW_BAD_VERSION', 'version', header.version,
      `COW store version ${header.version} is not supported (only version 1 exists)`)
  }
  const problem = chunkSectorsProblem(header.chunkSectors)
  if (problem !== undefined) {
    throw new CowFormatError('SNAPCOW_BAD_CHUNK_SIZE', 'chunk_size', header.chunkSectors,
      `COW header chunk_size ${header.chunkSectors} ${problem}`)
  }
  if (options.chunkSectors !== undefined && options.chunkSectors !== header.chunkSectors) {
    throw new CowFormatError('SNAPCOW_CHUNK_SIZE_MISMATCH', 'chunk_size', header.chunkSectors,
      `COW header chunk_size is ${header.chunkSectors} sectors (${header.chunkSectors * SECTOR_BYTES} bytes), ` +
      `not the chunkSize ${options.chunkSectors * SECTOR_BYTES} bytes (${options.chunkSectors} sectors) asked for: ` +
      'the header decides the chunk size; omit chunkSize to use it')
  }
  const geometry = cowGeometry(legalChunkSectors(header.chunkSectors))
  requireChunks(device, geometry, 2, 'the header and metadata area 0')

  const valid = header.valid !== 0
  const loaded: LoadedStore = {
    geometry, valid, currentArea: 0, currentCommitted: 0,
    nextFree: FIRST_DATA_CHUNK, area: new Uint8Array(geometry.chunkBytes), exceptionCount: 0,
  }
  if (!valid && options.scanInvalid !== true) return loaded // §9.6 step 6: the table is not read
  // The origin's last chunk may be partial: it still counts.
  const originChunks = options.originBytes === undefined ? undefined : Math.ceil(options.originBytes / geometry.chunkBytes)
  await scanTable(device, loaded, options.onException, originChunks)
  return loaded
}

/** Metadata areas read ahead of the one being checked: a long table is read many areas at a time. */
const READ_AHEAD = 16

/** One area's read, started early; a failure is kept until the scan reaches that area. */
interface AreaRead {
  bytes: Uint8Array
  failed: Promise<unknown>
}

// §9.6 step 7: walk areas until one is not full; check each record as it comes.
async function scanTable(device: BlockDevice, loaded: LoadedStore,
  onException: LoadStoreOptions['onException'], originChunks: number | undefined): Promise<void> {
  const g = loaded.geometry
  const seenOld = new ChunkSet()
  const seenNew = new ChunkSet()
  const deviceChunks = Math.floor(device.size / g.chunkBytes)
  let maxNew = FIRST_DATA_CHUNK - 1
  // Areas past the end of the table are read too (up to READ_AHEAD): only reads, never used.
  const ahead: AreaRead[] = []
  let nextToRead = 0
  const readAhead = (): void => {
    while (ahead.length < READ_AHEAD && g.areaLocation(nextToRead) < deviceChunks) {
      const bytes = new Uint8Array(g.chunkBytes)
      const failed = device.read(g.areaLocation(nextToRead) * g.chunkBytes, bytes).then(() => undefined, (cause: unknown) => cause ?? new Error('read failed'))
      ahead.push({ bytes, failed })
      nextToRead++
    }
  }
  for (let areaIndex = 0; ; areaIndex++) {
    const location = g.areaLocation(areaIndex)
    if (location >= deviceChunks) {
      throw new CowFormatError('SNAPCOW_COW_TOO_SMALL', 'size', device.size,
        `COW device of ${device.size} bytes ends before metadata area ${areaIndex} (chunk ${location}), ` +
        `which the full area ${areaIndex - 1} says must follow`, { area: areaIndex })
    }
    readAhead()
    const { bytes: area, failed } = ahead.shift()!
    const cause = await failed
    if (cause !== undefined) {
      throw new SnapcowError('SNAPCOW_IO', `reading metadata area ${areaIndex} of the COW store at byte ${location * g.chunkBytes} failed`, { cause })
    }
    const view = new DataView(area.buffer)
    let slot = 0
    for (; slot < g.exceptionsPerArea; slot++) {
      if (isTerminator(view, slot)) break
      const oldChunk = readOldChunk(view, slot)
      const newChunk = readNewChunk(view, slot)
      checkRecord(g, deviceChunks, originChunks, oldChunk, newChunk, seenOld, seenNew, areaIndex, slot)
      if (newChunk > maxNew) maxNew = newChunk
      loaded.exceptionCount++
      onException?.(asOldChunk(oldChunk), asNewChunk(newChunk))
    }
    if (slot < g.exceptionsPerArea) {
      area.fill(0, slot * RECORD_BYTES) // §9.6 step 8: forget bytes after the terminator
      loaded.currentArea = areaIndex
      loaded.currentCommitted = slot
      loaded.area = area
      loaded.nextFree = g.skipMetadata(maxNew + 1)
      await Promise.all(ahead.map((a) => a.failed)) // nothing left reading the device
      return
    }
  }
}

function checkRecord(g: CowGeometry, deviceChunks: number, originChunks: number | undefined, oldChunk: number, newChunk: number,
  seenOld: ChunkSet, seenNew: ChunkSet, area: number, slot: number): void {
  // Runs once per record: a message is built only when a record is refused.
  if (Number.isNaN(newChunk)) throw corrupt(area, slot, 'new_chunk', 'above 2^53', 'larger than any device')
  if (Number.isNaN(oldChunk)) throw corrupt(area, slot, 'old_chunk', 'above 2^53', 'larger than any origin')
  if (g.isMetadataChunk(newChunk)) throw corrupt(area, slot, 'new_chunk', newChunk, 'which is a metadata chunk, not data')
  if (newChunk >= deviceChunks) {
    throw corrupt(area, slot, 'new_chunk', newChunk, `which lies past the end of the COW device (${deviceChunks} chunks)`)
  }
  if (originChunks !== undefined && oldChunk >= originChunks) {
    throw corrupt(area, slot, 'old_chunk', oldChunk, `which lies past the origin's last chunk (the origin has ${originChunks} chunks of ` +
      `${g.chunkBytes} bytes): this store was made for another, bigger origin`)
  }
  if (seenNew.has(newChunk)) throw corrupt(area, slot, 'new_chunk', newChunk, 'which an earlier record already uses')
  if (seenOld.has(oldChunk)) throw corrupt(area, slot, 'old_chunk', oldChunk, 'which an earlier record already remaps')
  seenNew.add(newChunk)
  seenOld.add(oldChunk)
}

function corrupt(area: number, slot: number, field: string, value: number | string, why: string): CowFormatError {
  return new CowFormatError('SNAPCOW_CORRUPT_TABLE', field, value,
    `COW table is corrupt: record ${slot} of metadata area ${area} has ${field} ${value}, ${why}`, { area, slot })
}

function requireChunks(device: BlockDevice, g: CowGeometry, chunks: number, what: string): void {
  if (device.size < chunks * g.chunkBytes) {
    throw new CowFormatError('SNAPCOW_COW_TOO_SMALL', 'size', device.size,
      `COW device of ${device.size} bytes is too small for ${what} (${chunks} chunks of ${g.chunkBytes} bytes)`)
  }
}

async function readOrFail(device: BlockDevice, offset: number, into: Uint8Array, what: string): Promise<void> {
  try {
    await device.read(offset, into)
  } catch (cause) {
    throw new SnapcowError('SNAPCOW_IO', `reading ${what} of the COW store at byte ${offset} failed`, { cause })
  }
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`

