// io/units.ts: the units of block I/O and the only place where one unit becomes another.
// Chunk numbers (origin and COW), sectors and byte offsets are branded so that TypeScript
// refuses to mix them silently (style.md, "Units"). Imports nothing.

declare const unit: unique symbol
type Branded<T, U extends string> = T & { readonly [unit]: U }

/** A 512-byte sector number or count. */
export type Sector = Branded<number, 'Sector'>
/** A byte offset or length that has been checked (multiple of 512 where I/O needs it). */
export type ByteOffset = Branded<number, 'ByteOffset'>
/** A chunk index on the origin, in one snapshot's chunk units (the kernel's `old_chunk`). */
export type OldChunk = Branded<number, 'OldChunk'>
/** A chunk index on a COW device (the kernel's `new_chunk`). */
export type NewChunk = Branded<number, 'NewChunk'>
/** A chunk size in sectors (a power of two, at most 2^21 sectors as in Linux). */
export type ChunkSectors = Branded<number, 'ChunkSectors'>

/** Bytes in one sector. */
export const SECTOR_BYTES = 512

// The `as…` functions brand a number the caller has already checked; they check nothing.
// Public (index.ts) except asByteOffset: the store and chunk-machine APIs take branded values.

/** Brands a sector number or count (no check). */
export const asSector = (n: number): Sector => n as Sector
/** @internal */
export const asByteOffset = (n: number): ByteOffset => n as ByteOffset
/** Brands an origin chunk index (no check). */
export const asOldChunk = (n: number): OldChunk => n as OldChunk
/** Brands a COW chunk index (no check). */
export const asNewChunk = (n: number): NewChunk => n as NewChunk
/** Brands a chunk size in sectors (no check: see isLegalChunkSectors). */
export const asChunkSectors = (n: number): ChunkSectors => n as ChunkSectors

export const sectorsToBytes = (sectors: Sector): ByteOffset => (sectors * SECTOR_BYTES) as ByteOffset
/** Whole sectors in a byte count (rounds down, as the kernel's `i_size >> 9`). */
export const bytesToSectors = (bytes: number): Sector => Math.floor(bytes / SECTOR_BYTES) as Sector

export const chunkBytes = (chunkSectors: ChunkSectors): number => chunkSectors * SECTOR_BYTES

/** Byte offset of a COW chunk on its COW device. */
export const newChunkOffset = (chunk: NewChunk, chunkSectors: ChunkSectors): ByteOffset =>
  (chunk * chunkSectors * SECTOR_BYTES) as ByteOffset

/** Byte offset of an origin chunk on the origin device. */
export const oldChunkOffset = (chunk: OldChunk, chunkSectors: ChunkSectors): ByteOffset =>
  (chunk * chunkSectors * SECTOR_BYTES) as ByteOffset

/** The origin chunk (of one snapshot's chunk size) that holds a byte offset. */
export const oldChunkAt = (offset: ByteOffset, chunkSectors: ChunkSectors): OldChunk =>
  Math.floor(offset / (chunkSectors * SECTOR_BYTES)) as OldChunk

/** Chunks of this size that fit wholly in a device of `bytes` bytes. */
export const wholeChunksIn = (bytes: number, chunkSectors: ChunkSectors): number =>
  Math.floor(bytes / (chunkSectors * SECTOR_BYTES))
