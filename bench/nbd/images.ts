// bench/nbd/images.ts: the files every server is started on (a fully written, non-zero base
// image on tmpfs) and the fio replay logs, so every system replays the very same I/O list.
import { randomFillSync } from 'node:crypto'
import { open, writeFile } from 'node:fs/promises'
import { shuffled } from '../harness.js'

export const BLOCK = 4096
/** One first-touch write per 64 KiB: the first write to its chunk for 4 KiB and 64 KiB COW peers alike. */
export const STRIDE = 65536

/** Writes `bytes` of random data, every page allocated (like fio's default buffers). */
export async function writeImage(file: string, bytes: number): Promise<void> {
  const handle = await open(file, 'w')
  try {
    const piece = Buffer.alloc(1 << 20)
    for (let at = 0; at < bytes; at += piece.length) {
      randomFillSync(piece)
      await handle.write(piece, 0, Math.min(piece.length, bytes - at), at)
    }
  } finally {
    await handle.close()
  }
}

/** fio's version 2 iolog of 4 KiB requests at `offsets`, for the job named `j`. */
export async function writeIolog(file: string, op: 'read' | 'write', offsets: readonly number[]): Promise<void> {
  const lines = ['fio version 2 iolog', 'j.0.0 add', 'j.0.0 open', ...offsets.map((o) => `j.0.0 ${op} ${o} ${BLOCK}`), 'j.0.0 close', '']
  await writeFile(file, lines.join('\n'))
}

/**
 * The random region's I/O lists: one write per 64 KiB chunk (a seeded 4 KiB slot within it),
 * shuffled; reads of those blocks (copied) and of any block of the region (still uncopied
 * when they run, on a fresh server), drawn with replacement.
 */
export function ioLists(regionBytes: number, reads: number, seed: number): { writes: number[]; copiedReads: number[]; uncopiedReads: number[] } {
  let x = seed >>> 0 || 1
  const next = (n: number): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n }
  const slots = STRIDE / BLOCK
  const writes = shuffled(Math.floor(regionBytes / STRIDE), seed).map((c) => c * STRIDE + next(slots) * BLOCK)
  const copiedReads = Array.from({ length: reads }, () => writes[next(writes.length)]!)
  const blocks = Math.floor(regionBytes / BLOCK)
  const uncopiedReads = Array.from({ length: reads }, () => next(blocks) * BLOCK)
  return { writes, copiedReads, uncopiedReads }
}
