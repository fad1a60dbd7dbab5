// io/cow-format/geometry.ts: where things live on a persistent COW device (spec §9.1, §9.4).
// Chunk 0 is the header; metadata area k sits at chunk 1 + k(E+1) and is followed by its E
// data chunks, where E = records per area = chunk bytes / 16 = 32 × chunk sectors.
import type { ChunkSectors, NewChunk } from '../units.js'
import { SECTOR_BYTES, asNewChunk } from '../units.js'

/** Bytes of one on-disk exception record (two little-endian u64). */
export const RECORD_BYTES = 16
/** The header takes chunk 0 (the kernel's NUM_SNAPSHOT_HDR_CHUNKS). */
export const HEADER_CHUNKS = 1
/** The first chunk the allocator hands out: after the header and metadata area 0. */
export const FIRST_DATA_CHUNK = asNewChunk(2)

/**
 * The layout of a persistent store of one chunk size.
 * @example
 * const g = cowGeometry(asChunkSectors(8))
 * g.exceptionsPerArea // 256
 * g.areaLocation(1)   // 258
 */
export interface CowGeometry {
  readonly chunkSectors: ChunkSectors
  readonly chunkBytes: number
  /** Records per metadata area (`E`). */
  readonly exceptionsPerArea: number
  /** Chunks from one metadata area to the next (`E + 1`). */
  readonly stride: number
  /** The COW chunk that holds metadata area `area`. */
  areaLocation(area: number): NewChunk
  /** True for the header chunk and every metadata area chunk. */
  isMetadataChunk(chunk: number): boolean
  /** The kernel's skip_metadata: the chunk to hand out next when `next` may be a metadata chunk. */
  skipMetadata(next: number): NewChunk
}

export function cowGeometry(chunkSectors: ChunkSectors): CowGeometry {
  const chunkBytes = chunkSectors * SECTOR_BYTES
  const exceptionsPerArea = chunkBytes / RECORD_BYTES
  const stride = exceptionsPerArea + 1
  return {
    chunkSectors,
    chunkBytes,
    exceptionsPerArea,
    stride,
    areaLocation: (area) => asNewChunk(HEADER_CHUNKS + area * stride),
    isMetadataChunk: (chunk) => chunk === 0 || chunk % stride === HEADER_CHUNKS,
    skipMetadata: (next) => asNewChunk(next % stride === HEADER_CHUNKS ? next + 1 : next),
  }
}
