// Kernel-made stores (../shared/vectors/kernel) against snapcow's reader and writer (spec §9).
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { PersistentStore } from '../../io/cow-format/persistent-store.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { asChunkSectors, asOldChunk } from '../../io/units.js'
import { kernelVectors, metadataChunkOffsets, parseCowIndependently, sha256 } from '../support/kernel-vectors.js'

const vectors = kernelVectors()

/** `0 <sectors> snapshot <allocated>/<total> <metadata>` from a store's usage. */
function statusLine(originSectors: number, store: PersistentStore): string {
  if (!store.valid) return `0 ${originSectors} snapshot Invalid`
  const u = store.usage()
  return `0 ${originSectors} snapshot ${u.allocatedSectors}/${u.totalSectors} ${u.metadataSectors}`
}

test('all five public vectors are here', () => {
  expect(vectors.map((v) => v.name)).toEqual(['cs16-multiarea', 'cs8-basic', 'cs8-fresh', 'cs8-invalid', 'cs8-merged'])
})

describe.each(vectors.map((v) => [v.name, v] as const))('kernel vector %s', (_name, vector) => {
  const m = vector.manifest
  const image = vector.cow()

  test('the image is the one the manifest describes', () => {
    expect(sha256(image)).toBe(m.cow.sha256)
    expect(image.length).toBe(m.cow.bytes)
  })

  test('loads, with the exception map an independent parse finds and the manifest counts', async () => {
    const independent = parseCowIndependently(image)
    expect(independent.table).toEqual(m.cow.exception_table)
    expect(independent.table.length).toBe(m.cow.exceptions)

    const info = await readCowStore(MemoryDevice.from(image, { readOnly: true }), { scanInvalid: true })
    expect(info.valid).toBe(m.cow.header.valid !== 0)
    expect(info.version).toBe(1)
    expect(info.chunkSectors).toBe(m.chunk_sectors)
    expect(info.exceptions).toEqual(independent.table)
    expect(new Map(info.exceptions)).toEqual(new Map(m.cow.exception_table))
  })

  test('usage from the loaded store equals the kernel status line', async () => {
    const store = await PersistentStore.load(MemoryDevice.from(image, { readOnly: true }))
    expect(statusLine(m.origin.sectors, store)).toBe(m.load.status)
    expect(statusLine(m.origin.sectors, store)).toBe(m.status.final)
    if (m.outcome !== 'invalid') return
    // The kernel does not read an invalid store's table; read it anyway and check the
    // numbers against what the kernel printed when the COW had just filled up.
    const scanned = await PersistentStore.load(MemoryDevice.from(image, { readOnly: true }), { scanInvalid: true })
    const u = scanned.usage()
    expect(`0 ${m.origin.sectors} snapshot ${u.allocatedSectors}/${u.totalSectors} ${u.metadataSectors}`).toBe(m.status.full)
  })

  test('writing its records through snapcow gives the kernel\'s metadata chunks byte for byte', async () => {
    const cow = new MemoryDevice(m.cow.bytes)
    const store = await PersistentStore.create(cow, asChunkSectors(m.chunk_sectors))
    for (const [oldChunk, newChunk] of m.cow.exception_table) {
      const allocated = store.allocate()
      expect(allocated).toBe(newChunk) // the allocator hands out what the kernel did
      expect(await store.commit(asOldChunk(oldChunk), allocated!, true)).toBe(true)
    }
    if (m.outcome === 'invalid') {
      expect(store.allocate()).toBeUndefined() // the write that found the COW full
      await store.invalidate()
    }
    const ours = cow.snapshotBytes()
    const offsets = metadataChunkOffsets(m.cow.bytes, m.chunk_sectors)
    for (const offset of offsets) {
      const at = `metadata chunk at byte ${offset}`
      expect(Buffer.from(ours.subarray(offset, offset + m.chunk_bytes)).equals(image.subarray(offset, offset + m.chunk_bytes)), at).toBe(true)
    }
    expect(statusLine(m.origin.sectors, store)).toBe(m.status.final)
  })
})

test('the fresh vector\'s header chunk and area 0 are what snapcow writes for a fresh store', async () => {
  const fresh = vectors.find((v) => v.name === 'cs8-fresh')!
  const image = fresh.cow()
  const cow = new MemoryDevice(fresh.manifest.cow.bytes)
  await PersistentStore.create(cow, asChunkSectors(fresh.manifest.chunk_sectors))
  const ours = cow.snapshotBytes()
  const twoChunks = 2 * fresh.manifest.chunk_bytes
  expect(Buffer.from(ours.subarray(0, twoChunks)).equals(image.subarray(0, twoChunks))).toBe(true)
  // and, the device having started zeroed, the whole image
  expect(sha256(ours)).toBe(fresh.manifest.cow.sha256)
})

test('the merge vector: clearing runs from the end as §9.8 gives the kernel\'s merged COW', async () => {
  const merged = vectors.find((v) => v.manifest.merge !== undefined)!
  const m = merged.manifest
  const cow = MemoryDevice.from(merged.cow())
  const store = await PersistentStore.load(cow)
  let batches = 0
  let total = 0
  for (let run = await store.prepareMerge(); run !== undefined; run = await store.prepareMerge()) {
    await store.commitMerge(run.count)
    batches++
    total += run.count
  }
  expect(total).toBe(m.cow.exceptions)
  expect(batches).toBeGreaterThan(1)
  expect(sha256(cow.snapshotBytes())).toBe(m.merge!.cow_merged_sha256)
  expect(statusLine(m.origin.sectors, store).replace('snapshot', 'snapshot-merge')).toBe(m.merge!.status_merged)
})
