// io/cow-format/chunk-size.ts: the chunk-size rules of spec §15, shared by create and load.
import type { ChunkSectors } from '../units.js'
import { asChunkSectors } from '../units.js'

/** The kernel's upper bound: chunk sizes are at most 4 194 303 sectors, so 2^21 is the largest. */
export const MAX_CHUNK_SECTORS = 4_194_303

/** Why a chunk size (in sectors) is illegal, or undefined when it is legal. */
export function chunkSectorsProblem(sectors: number): string | undefined {
  if (!Number.isSafeInteger(sectors) || sectors <= 0) return 'is not a positive whole number of sectors'
  if ((sectors & (sectors - 1)) !== 0) return 'is not a power of two'
  if (sectors > MAX_CHUNK_SECTORS) return `is larger than ${MAX_CHUNK_SECTORS} sectors`
  return undefined
}

/** True when `sectors` is a legal chunk size: a power of two from 1 to 2^21 sectors, as in Linux. */
export const isLegalChunkSectors = (sectors: number): sectors is ChunkSectors =>
  chunkSectorsProblem(sectors) === undefined

/** @internal Brands a chunk size already checked by {@link chunkSectorsProblem}. */
export const legalChunkSectors = (sectors: number): ChunkSectors => asChunkSectors(sectors)
