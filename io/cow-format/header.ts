// io/cow-format/header.ts: the 16-byte header in chunk 0 (spec §9.2), little-endian.
// The header chunk is always written whole: these 16 bytes, then zeros to the chunk's end.

/** "SnAp" read as a little-endian u32. */
export const SNAPSHOT_MAGIC = 0x70416e53
/** The only on-disk version there is. */
export const SNAPSHOT_DISK_VERSION = 1
/** Bytes of the header that carry fields. */
export const HEADER_BYTES = 16

/** The header's fields as they are on disk (unchecked). */
export interface DiskHeader {
  magic: number
  /** Non-zero means valid (the kernel writes 1). */
  valid: number
  version: number
  chunkSectors: number
}

/** Reads the four header fields from the first 16 bytes of chunk 0. */
export function decodeHeader(bytes: Uint8Array): DiskHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES)
  return {
    magic: view.getUint32(0, true),
    valid: view.getUint32(4, true),
    version: view.getUint32(8, true),
    chunkSectors: view.getUint32(12, true),
  }
}

/** The whole header chunk as the kernel writes it: fields, then zero padding. */
export function encodeHeaderChunk(chunkBytes: number, fields: { valid: boolean; chunkSectors: number }): Uint8Array {
  const chunk = new Uint8Array(chunkBytes)
  const view = new DataView(chunk.buffer)
  view.setUint32(0, SNAPSHOT_MAGIC, true)
  view.setUint32(4, fields.valid ? 1 : 0, true)
  view.setUint32(8, SNAPSHOT_DISK_VERSION, true)
  view.setUint32(12, fields.chunkSectors, true)
  return chunk
}
