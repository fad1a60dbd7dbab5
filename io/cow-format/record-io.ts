// io/cow-format/record.ts: one 16-byte exception record {u64 old_chunk, u64 new_chunk}
// inside a metadata area (spec §9.3). Chunk numbers above 2^53 cannot be represented
// exactly in a JS number, so the reader reports them as unsafe and the loader rejects them.
import { RECORD_BYTES } from './geometry.js'

/** A record as read from disk; `NaN` marks a value too large to represent exactly. */
export interface DiskRecord {
  oldChunk: number
  newChunk: number
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
const toNumber = (v: bigint): number => (v > MAX_SAFE ? Number.NaN : Number(v))

/** Reads record `slot` of an area. */
export function readRecord(area: DataView, slot: number): DiskRecord {
  const at = slot * RECORD_BYTES
  // Fast path: both high words zero (every realistic store).
  const oldHigh = area.getUint32(at + 4, true)
  const newHigh = area.getUint32(at + 12, true)
  if (oldHigh === 0 && newHigh === 0) {
    return { oldChunk: area.getUint32(at, true), newChunk: area.getUint32(at + 8, true) }
  }
  return {
    oldChunk: toNumber(area.getBigUint64(at, true)),
    newChunk: toNumber(area.getBigUint64(at + 8, true)),
  }
}

/** A little-endian u64 at `at` as a number; `NaN` above 2^53 (no BigInt, no object: the loader's path). */
function readU64(area: DataView, at: number): number {
  const low = area.getUint32(at, true)
  const high = area.getUint32(at + 4, true)
  if (high === 0) return low
  return high > 0x1f_ffff ? Number.NaN : high * 0x1_0000_0000 + low
}

/** The old_chunk of record `slot` (`NaN`: too large to represent). */
export const readOldChunk = (area: DataView, slot: number): number => readU64(area, slot * RECORD_BYTES)
/** The new_chunk of record `slot` (`NaN`: too large to represent). */
export const readNewChunk = (area: DataView, slot: number): number => readU64(area, slot * RECORD_BYTES + 8)

/** True when record `slot` ends the table (new_chunk 0; old_chunk is not inspected). */
export const isTerminator = (area: DataView, slot: number): boolean =>
  area.getUint32(slot * RECORD_BYTES + 8, true) === 0 && area.getUint32(slot * RECORD_BYTES + 12, true) === 0

/** Writes record `slot` of an area. */
export function writeRecord(area: DataView, slot: number, oldChunk: number, newChunk: number): void {
  const at = slot * RECORD_BYTES
  writeU64(area, at, oldChunk)
  writeU64(area, at + 8, newChunk)
}

// Two u32 halves instead of a BigInt: commits are on the write path and allocate nothing.
function writeU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true)
  view.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true)
}

/** Zeroes both fields of record `slot` (the kernel's clear_exception, used by merge). */
export function clearRecord(area: Uint8Array, slot: number): void {
  area.fill(0, slot * RECORD_BYTES, (slot + 1) * RECORD_BYTES)
}
