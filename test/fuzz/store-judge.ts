// test/fuzz/store-judge.ts: what a COW image must load as, worked out from its bytes alone with
// no snapcow code: the rules of docs/cow-format.md and docs/errors.md, in the loader's order
// (header fields, device size, then the table record by record). The fuzz tests' oracle.

export type Verdict =
  | { kind: 'refuse'; code: string; area?: number; slot?: number }
  | {
    kind: 'load'; valid: boolean; chunkSectors: number
    /** `[old, new]` in table order; empty for an invalid store unless scanned. */
    table: Array<[number, number]>
    /** The last area read (the kernel's current_area) and the allocator's next chunk. */
    currentArea: number; nextFree: number
  }

export interface JudgeOptions {
  /** Origin size in bytes: records past its last (possibly partial) chunk are refused. */
  originBytes?: number
  /** Chunk size in sectors the caller asked for. */
  chunkSectors?: number
  /** Read the table of an invalid store too (readCowStore's scanInvalid, `snapcow check`). */
  scanInvalid?: boolean
}

const MAGIC = 0x70416e53
const MAX_CHUNK_SECTORS = 4_194_303
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

export function judgeStore(image: Uint8Array, options: JudgeOptions = {}): Verdict {
  const refuse = (code: string, area?: number, slot?: number): Verdict =>
    ({ kind: 'refuse', code, ...(area === undefined ? {} : { area, slot }) })
  if (image.length < 512) return refuse('SNAPCOW_COW_TOO_SMALL')
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength)
  const magic = view.getUint32(0, true)
  const valid = view.getUint32(4, true) !== 0
  const version = view.getUint32(8, true)
  const cs = view.getUint32(12, true)
  if (magic === 0) return refuse('SNAPCOW_NO_STORE')
  if (magic !== MAGIC) return refuse('SNAPCOW_BAD_MAGIC')
  if (version !== 1) return refuse('SNAPCOW_BAD_VERSION')
  if (cs === 0 || (cs & (cs - 1)) !== 0 || cs > MAX_CHUNK_SECTORS) return refuse('SNAPCOW_BAD_CHUNK_SIZE')
  if (options.chunkSectors !== undefined && options.chunkSectors !== cs) return refuse('SNAPCOW_CHUNK_SIZE_MISMATCH')
  const chunkBytes = cs * 512
  if (image.length < 2 * chunkBytes) return refuse('SNAPCOW_COW_TOO_SMALL')
  const perArea = chunkBytes / 16
  const stride = perArea + 1
  const deviceChunks = Math.floor(image.length / chunkBytes)
  const originChunks = options.originBytes === undefined ? Infinity : Math.ceil(options.originBytes / chunkBytes)
  const isMetadata = (c: bigint): boolean => c === 0n || c % BigInt(stride) === 1n
  const table: Array<[number, number]> = []
  if (!valid && options.scanInvalid !== true) return { kind: 'load', valid, chunkSectors: cs, table, currentArea: 0, nextFree: 2 }
  const olds = new Set<bigint>()
  const news = new Set<bigint>()
  let maxNew = 1
  for (let area = 0; ; area++) {
    const location = 1 + area * stride
    if (location >= deviceChunks) return refuse('SNAPCOW_COW_TOO_SMALL')
    for (let slot = 0; slot < perArea; slot++) {
      const at = location * chunkBytes + slot * 16
      const oldChunk = view.getBigUint64(at, true)
      const newChunk = view.getBigUint64(at + 8, true)
      if (newChunk === 0n) {
        const next = maxNew + 1
        return { kind: 'load', valid, chunkSectors: cs, table, currentArea: area, nextFree: next % stride === 1 ? next + 1 : next }
      }
      const bad = oldChunk > MAX_SAFE || newChunk > MAX_SAFE || isMetadata(newChunk) || newChunk >= BigInt(deviceChunks) ||
        Number(oldChunk) >= originChunks || olds.has(oldChunk) || news.has(newChunk)
      if (bad) return refuse('SNAPCOW_CORRUPT_TABLE', area, slot)
      olds.add(oldChunk)
      news.add(newChunk)
      table.push([Number(oldChunk), Number(newChunk)])
      maxNew = Math.max(maxNew, Number(newChunk))
    }
  }
}
