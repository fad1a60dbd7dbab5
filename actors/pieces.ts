// actors/pieces.ts: the one place a volume request is cut at chunk boundaries (spec §5.2,
// §5.6), for the origin, the snapshots and the merging volume alike. Below it, code sees only
// pieces that lie inside one chunk. A request inside one chunk (the common case) costs no
// array and no extra promise: its piece's own promise is returned as it is.
import type { ByteOffset } from '../io/units.js'
import { asByteOffset } from '../io/units.js'

/** Handles one piece; `context` is passed through so callers need no closure per request. */
export type PieceRun<C> = (context: C, offset: ByteOffset, piece: Uint8Array) => Promise<void>

/**
 * Runs `run` on every piece of `[offset, offset + bytes.length)` that lies inside one chunk of
 * `chunkBytes` (a power of two), all at once, and settles when every piece has: it then
 * rejects with the first failure. Pieces are subarrays of `bytes` (no copy).
 * @example
 * return forEachPiece(offset, data, s.chunkBytes, writePiece, s)
 */
export function forEachPiece<C>(offset: number, bytes: Uint8Array, chunkBytes: number, run: PieceRun<C>, context: C): Promise<void> {
  const end = offset + bytes.length
  const firstEnd = (Math.floor(offset / chunkBytes) + 1) * chunkBytes
  if (end <= firstEnd) return run(context, asByteOffset(offset), bytes)
  const pieces: Array<Promise<void>> = []
  for (let at = offset; at < end;) {
    const to = Math.min(end, (Math.floor(at / chunkBytes) + 1) * chunkBytes)
    pieces.push(run(context, asByteOffset(at), bytes.subarray(at - offset, to - offset)))
    at = to
  }
  return settleAll(pieces)
}

/** Waits for every piece, then rethrows the first failure (no piece is left running). */
export async function settleAll(pieces: Array<Promise<void>>): Promise<void> {
  const results = await Promise.allSettled(pieces)
  for (const r of results) if (r.status === 'rejected') throw r.reason
}
