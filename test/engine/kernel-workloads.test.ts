// snapcow writes what Linux wrote: each vector's workload, replayed through snapcow's engine
// from the same origin and a zeroed COW, gives the kernel's COW image byte for byte and the
// status lines the kernel printed at each T label (spec §5, §9, §13, §14).
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { gen, kernelVectors, sha256 } from '../support/kernel-vectors.js'

const PAGE = 4096

/**
 * The oracle wrote 512-aligned requests with O_DIRECT and the rest through the page cache,
 * which reads whole 4 KiB pages first and writes them back whole (vectors/README.md).
 */
async function writeAsTheOracleDid(device: BlockDevice, offset: number, data: Uint8Array): Promise<void> {
  if (offset % 512 === 0 && data.length % 512 === 0) return device.write(offset, data)
  const start = Math.floor(offset / PAGE) * PAGE
  const end = Math.ceil((offset + data.length) / PAGE) * PAGE
  const pages = new Uint8Array(end - start)
  await device.read(start, pages)
  pages.set(data, offset - start)
  await device.write(start, pages)
}

describe.each(kernelVectors().map((v) => [v.name, v] as const))('kernel vector %s', (_name, vector) => {
  const m = vector.manifest
  test('replaying its workload gives the kernel\'s COW image and status lines', async () => {
    const origin = await openOrigin(MemoryDevice.from(gen(m.origin.seed, m.origin.bytes)))
    const cow = new MemoryDevice(m.cow.bytes)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: m.chunk_bytes, overflow: m.store === 'PO' })
    expect(snapshot.status().line).toBe(m.status.created)
    const failed = new Set(m.workload.failed_writes.map((f) => f.line))
    const lines = fs.readFileSync(path.join(vector.dir, 'workload.txt'), 'utf8').split('\n')
    for (const [i, line] of lines.entries()) {
      const [op, a, b, seed] = line.trim().split(/\s+/)
      if (op === 'T') expect(snapshot.status().line, `status at T ${a}`).toBe(m.status[a!])
      if (op !== 'W' && op !== 'S') continue
      const write = writeAsTheOracleDid(op === 'W' ? origin : snapshot, Number(a), gen(seed!, Number(b)))
      if (failed.has(i + 1)) await expect(write, `line ${i + 1} fails as it did in Linux`).rejects.toThrow()
      else await write
    }
    expect(snapshot.status().line).toBe(m.status.final)
    const image = cow.snapshotBytes()
    const kernel = vector.cow()
    for (let at = 0; at < image.length; at += m.chunk_bytes) {
      // name the first differing chunk rather than only two hashes
      if (!Buffer.from(image.subarray(at, at + m.chunk_bytes)).equals(kernel.subarray(at, at + m.chunk_bytes))) {
        expect.fail(`COW chunk ${at / m.chunk_bytes} differs from the kernel's`)
      }
    }
    expect(sha256(image)).toBe(m.cow.sha256)
    const originImage = new Uint8Array(origin.size)
    await origin.read(0, originImage)
    expect(sha256(originImage)).toBe(m.sha256.origin_after)
  })
})
