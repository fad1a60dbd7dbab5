// test/support/kernel-vectors.ts: the kernel-made vectors of ../shared/vectors/kernel, with
// the origin regenerated from its seed as ../shared/vectors/README.md describes.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import zlib from 'node:zlib'

const here = path.dirname(fileURLToPath(import.meta.url))
/** The shared folder sits beside the work tree (CI clones main with shared/ beside it). */
export const SHARED_DIR = process.env.SNAPCOW_SHARED_DIR ?? path.resolve(here, '../../../shared')
export const VECTORS_DIR = path.join(SHARED_DIR, 'vectors/kernel')

export interface VectorManifest {
  name: string
  origin: { bytes: number; sectors: number; seed: string }
  chunk_sectors: number
  chunk_bytes: number
  store: 'P' | 'PO'
  cow: {
    bytes: number
    sectors: number
    sha256: string
    header: { magic: string; valid: number; version: number; chunk_size: number }
    exceptions: number
    metadata_areas_with_exceptions: number
    exceptions_per_area: number
    exception_table: Array<[number, number]>
  }
  workload: { failed_writes: Array<{ line: number; op: string; offset: number; length: number }> }
  outcome: 'valid' | 'invalid' | 'overflow'
  status: Record<string, string>
  sha256: Record<string, string | null>
  load: { status: string; checksum_snapshot: string }
  merge?: { cow_merged_file: string; cow_merged_sha256: string; status_merged: string; origin_after_merge_sha256: string }
}

export interface KernelVector {
  name: string
  dir: string
  manifest: VectorManifest
  /** The COW image exactly as the kernel left it. */
  cow(): Buffer
  /** The COW after the kernel's merge (merge vectors only). */
  cowMerged(): Buffer | undefined
}

/** Every vector folder, by name. */
export function kernelVectors(): KernelVector[] {
  return fs.readdirSync(VECTORS_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const dir = path.join(VECTORS_DIR, name)
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as VectorManifest
      return {
        name, dir, manifest,
        cow: () => zlib.gunzipSync(fs.readFileSync(path.join(dir, 'cow.img.gz'))),
        cowMerged: () => manifest.merge === undefined ? undefined
          : zlib.gunzipSync(fs.readFileSync(path.join(dir, manifest.merge.cow_merged_file))),
      }
    })
}

/** The oracle's data generator: AES-128-CTR keystream under SHA-256("dm-oracle:" + seed). */
export function gen(seed: string, length: number): Buffer {
  const key = crypto.createHash('sha256').update('dm-oracle:' + seed).digest().subarray(0, 16)
  return crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length))
}

export const sha256 = (bytes: Uint8Array): string => crypto.createHash('sha256').update(bytes).digest('hex')

/**
 * A plain parse of a persistent COW image written for the tests only, sharing no code with
 * snapcow: the header fields and the records, area by area, up to the first new_chunk 0.
 */
export function parseCowIndependently(image: Buffer): {
  magic: number; valid: number; version: number; chunkSize: number
  table: Array<[number, number]>; lastArea: number
} {
  const magic = image.readUInt32LE(0)
  const valid = image.readUInt32LE(4)
  const version = image.readUInt32LE(8)
  const chunkSize = image.readUInt32LE(12)
  const chunkBytes = chunkSize * 512
  const perArea = chunkBytes / 16
  const table: Array<[number, number]> = []
  for (let area = 0; ; area++) {
    const base = (1 + area * (perArea + 1)) * chunkBytes
    for (let i = 0; i < perArea; i++) {
      const oldChunk = Number(image.readBigUInt64LE(base + i * 16))
      const newChunk = Number(image.readBigUInt64LE(base + i * 16 + 8))
      if (newChunk === 0) return { magic, valid, version, chunkSize, table, lastArea: area }
      table.push([oldChunk, newChunk])
    }
  }
}

/** Byte offsets of the header chunk and every metadata area chunk that fits in the image. */
export function metadataChunkOffsets(imageBytes: number, chunkSectors: number): number[] {
  const chunkBytes = chunkSectors * 512
  const stride = chunkBytes / 16 + 1
  const offsets = [0]
  for (let chunk = 1; (chunk + 1) * chunkBytes <= imageBytes; chunk += stride) offsets.push(chunk * chunkBytes)
  return offsets
}
