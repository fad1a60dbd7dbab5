// Kernel → snapcow: every kernel-made COW loads under its regenerated origin with the
// snapshot content and the status line the kernel reported (spec §9.6, §14).
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { gen, kernelVectors, sha256 } from '../support/kernel-vectors.js'

/** Origin after the workload's origin writes, as vectors/README.md regenerates it. */
function originAfter(dir: string, m: { origin: { seed: string; bytes: number }; workload: { failed_writes: Array<{ line: number }> } }): Buffer {
  const failed = new Set(m.workload.failed_writes.map((f) => f.line))
  const after = gen(m.origin.seed, m.origin.bytes)
  fs.readFileSync(path.join(dir, 'workload.txt'), 'utf8').split('\n').forEach((line, i) => {
    const [op, off, len, seed] = line.trim().split(/\s+/)
    if (op === 'W' && !failed.has(i + 1)) gen(seed!, Number(len)).copy(after, Number(off))
  })
  return after
}

describe.each(kernelVectors().map((v) => [v.name, v] as const))('kernel vector %s', (_name, vector) => {
  const m = vector.manifest
  test('loads under its origin: the kernel\'s status line and snapshot content', async () => {
    const originImage = originAfter(vector.dir, m)
    expect(sha256(originImage)).toBe(m.sha256.origin_after)
    const cow = MemoryDevice.from(vector.cow(), { readOnly: true }) // loading writes nothing
    const origin = await openOrigin(MemoryDevice.from(originImage))
    const snapshot = await origin.loadSnapshot(cow)
    expect(snapshot.status().line).toBe(m.load.status)
    const content = new Uint8Array(origin.size)
    if (m.outcome === 'invalid') {
      await expect(snapshot.read(0, content)).rejects.toMatchObject({ code: 'SNAPCOW_INVALID' })
      await expect(snapshot.read(0, content)).rejects.toThrow(/invalid/)
      await expect(snapshot.write(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'SNAPCOW_INVALID' })
      return
    }
    await snapshot.read(0, content)
    expect(sha256(content)).toBe(m.sha256.snapshot_final)
    expect(sha256(content)).toBe(m.load.checksum_snapshot)
  })
})
