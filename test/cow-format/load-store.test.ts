// Loading a persistent store (spec §9.6): what loads, what is refused with which typed error,
// and that a refused load wrote nothing.
import { describe, expect, test } from 'vitest'
import { CowFormatError, SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { PersistentStore } from '../../io/cow-format/persistent-store.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { asChunkSectors, asOldChunk } from '../../io/units.js'
import { RecordingDevice } from '../support/recording-device.js'

/** A 1 MiB store of 4 KiB chunks holding `records` (old, new) written raw into area 0. */
async function storeWith(records: Array<[number | bigint, number | bigint]>, size = 1 << 20): Promise<MemoryDevice> {
  const image = new MemoryDevice(size)
  await PersistentStore.create(image, asChunkSectors(8))
  const area = new Uint8Array(4096)
  const view = new DataView(area.buffer)
  records.forEach(([o, n], i) => {
    view.setBigUint64(i * 16, BigInt(o), true)
    view.setBigUint64(i * 16 + 8, BigInt(n), true)
  })
  await image.write(4096, area)
  return image
}

async function withHeader(patch: (view: DataView) => void): Promise<MemoryDevice> {
  const image = await storeWith([[5, 2]])
  const sector = new Uint8Array(512)
  await image.read(0, sector)
  patch(new DataView(sector.buffer))
  await image.write(0, sector)
  return image
}

/** Loads through a recording wrapper and returns the error, checking nothing was written. */
async function refusal(image: MemoryDevice): Promise<CowFormatError> {
  const cow = new RecordingDevice(image)
  const error = await readCowStore(cow).catch((e: unknown) => e)
  expect(cow.writes()).toEqual([])
  const viaStore = await PersistentStore.load(cow).catch((e: unknown) => e)
  expect((viaStore as Error).message).toBe((error as Error).message) // the same refusal either way
  expect(cow.writes()).toEqual([])
  expect(error).toBeInstanceOf(CowFormatError)
  return error as CowFormatError
}

describe('the header', () => {
  test('magic 0 is "no store yet", never initialised by a load', async () => {
    const e = await refusal(new MemoryDevice(1 << 20))
    expect(e).toMatchObject({ code: 'SNAPCOW_NO_STORE', field: 'magic', value: 0 })
    expect(e.message).toMatch(/no snapshot store/)
  })

  test('a foreign magic is refused, naming the field and value', async () => {
    const e = await refusal(await withHeader((v) => v.setUint8(0, 0x54)))
    expect(e).toMatchObject({ code: 'SNAPCOW_BAD_MAGIC', field: 'magic', value: '0x70416e54' })
    expect(e.message).toContain('0x70416e54')
  })

  test.each([0, 2, 0xffffffff])('version %s is refused', async (version) => {
    const e = await refusal(await withHeader((v) => v.setUint32(8, version, true)))
    expect(e).toMatchObject({ code: 'SNAPCOW_BAD_VERSION', field: 'version', value: version })
    expect(e.message).toContain(`version ${version}`)
  })

  test.each([0, 3, 24, 1 << 22, 0xffffffff])('chunk_size %s is refused', async (cs) => {
    const e = await refusal(await withHeader((v) => v.setUint32(12, cs, true)))
    expect(e).toMatchObject({ code: 'SNAPCOW_BAD_CHUNK_SIZE', field: 'chunk_size', value: cs })
    expect(e.message).toContain(`chunk_size ${cs}`)
  })

  test('the header chunk size wins, whatever made the store', async () => {
    const image = new MemoryDevice(1 << 20)
    await PersistentStore.create(image, asChunkSectors(16))
    expect((await readCowStore(image)).chunkSectors).toBe(16)
  })

  test('valid = 0 loads as invalid without reading the table (even a garbage one)', async () => {
    const image = await storeWith([[5, 1], [5, 1]]) // would be refused if read
    const sector = new Uint8Array(512)
    await image.read(0, sector)
    sector[4] = 0
    await image.write(0, sector)
    expect(await readCowStore(image)).toMatchObject({ valid: false, exceptions: [], nextFreeChunk: 2, metadataAreas: 1 })
  })

  test('any non-zero valid value means valid', async () => {
    const image = await withHeader((v) => v.setUint32(4, 0xdead, true))
    expect((await readCowStore(image)).valid).toBe(true)
  })
})

describe('sizes', () => {
  test('a device smaller than a sector is too small', async () => {
    const e = await refusal(new MemoryDevice(0))
    expect(e).toMatchObject({ code: 'SNAPCOW_COW_TOO_SMALL', field: 'size', value: 0 })
  })

  test('a device that ends before metadata area 0 is too small', async () => {
    const full = await storeWith([])
    const image = new MemoryDevice(4096 + 512)
    const bytes = new Uint8Array(4096 + 512)
    await full.read(0, bytes)
    await image.write(0, bytes)
    const e = await refusal(image)
    expect(e).toMatchObject({ code: 'SNAPCOW_COW_TOO_SMALL', value: 4608 })
    expect(e.message).toContain('4608')
  })

  test('a full last area with no room for the next one is refused, naming the area', async () => {
    // cs 1: areas hold 32 records; fill area 0, then cut the device before area 1 (chunk 34)
    const big = new MemoryDevice(100 * 512)
    const store = await PersistentStore.create(big, asChunkSectors(1))
    for (let i = 0; i < 32; i++) await store.commit(asOldChunk(i), store.allocate()!, true)
    const image = new MemoryDevice(34 * 512)
    const bytes = new Uint8Array(34 * 512)
    await big.read(0, bytes)
    await image.write(0, bytes)
    const e = await refusal(image)
    expect(e).toMatchObject({ code: 'SNAPCOW_COW_TOO_SMALL', area: 1 })
    expect(e.message).toMatch(/metadata area 1/)
  })
})

describe('records (decided: a record that could return wrong data refuses the load)', () => {
  const cases: Array<[string, Array<[number | bigint, number | bigint]>, object]> = [
    ['new_chunk is metadata area 0', [[5, 2], [6, 1]], { field: 'new_chunk', value: 1, area: 0, slot: 1 }],
    ['new_chunk is metadata area 1', [[5, 258]], { field: 'new_chunk', value: 258, slot: 0 }],
    ['new_chunk past the device', [[5, 256]], { field: 'new_chunk', value: 256 }],
    ['new_chunk used twice', [[5, 2], [6, 2]], { field: 'new_chunk', value: 2, slot: 1 }],
    ['old_chunk remapped twice', [[5, 2], [5, 3]], { field: 'old_chunk', value: 5, slot: 1 }],
    ['new_chunk above 2^53', [[5, 2n ** 60n]], { field: 'new_chunk' }],
    ['old_chunk above 2^53', [[2n ** 64n - 1n, 2]], { field: 'old_chunk' }],
  ]
  test.each(cases)('%s', async (_what, records, expected) => {
    const e = await refusal(await storeWith(records))
    expect(e).toMatchObject({ code: 'SNAPCOW_CORRUPT_TABLE', ...expected })
    expect(e.message).toContain(`${(expected as { field: string }).field}`)
  })

  test('the old_chunk of the terminator is not inspected', async () => {
    const info = await readCowStore(await storeWith([[5, 2], [123456, 0]]))
    expect(info.exceptions).toEqual([[5, 2]])
  })

  test('any record order loads; next free is after the largest, skipping a metadata chunk', async () => {
    expect((await readCowStore(await storeWith([[9, 40], [3, 2], [4, 17]]))).nextFreeChunk).toBe(41)
    expect((await readCowStore(await storeWith([[9, 257], [3, 2]], 2 << 20))).nextFreeChunk).toBe(259) // 258 is area 1
  })
})

test('a read error while loading is a SnapcowError SNAPCOW_IO with the cause, and nothing is written', async () => {
  const cow = new RecordingDevice(await storeWith([[5, 2]]))
  cow.failRead = (offset) => offset === 4096
  const error = await readCowStore(cow).catch((e: unknown) => e)
  expect(error).toBeInstanceOf(SnapcowError)
  expect(error).toMatchObject({ code: 'SNAPCOW_IO' })
  expect((error as Error).cause).toBeInstanceOf(Error)
  expect(cow.writes()).toEqual([])
})

describe('areas are read ahead (a long table loads many areas at a time)', () => {
  /** A store of 1-sector chunks (32 records an area) with `n` records, chunk k → data chunk in order. */
  async function longStore(n: number): Promise<MemoryDevice> {
    const cow = new MemoryDevice(4 << 20)
    const store = await PersistentStore.create(cow, asChunkSectors(1))
    for (let i = 0; i < n; i++) await store.commit(asOldChunk(i), store.allocate()!, true)
    return cow
  }

  test('a table of many areas loads whole, in order', async () => {
    const info = await readCowStore(await longStore(32 * 40 + 5))
    expect(info.exceptions).toHaveLength(32 * 40 + 5)
    expect(info.exceptions.slice(0, 3).map(([o]) => o)).toEqual([0, 1, 2])
    expect(info.metadataAreas).toBe(41)
  })

  test('a failed read of an area the table needs is SNAPCOW_IO naming that area', async () => {
    const cow = new RecordingDevice(await longStore(32 * 3 + 1)) // areas 0–2 full, area 3 holds the end
    const area2 = (2 * 33 + 1) * 512
    cow.failRead = (offset) => offset === area2
    const error = await readCowStore(cow).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'SNAPCOW_IO' })
    expect((error as Error).message).toMatch(/metadata area 2\b/)
  })

  test('a failed read of an area past the end of the table does not matter', async () => {
    const cow = new RecordingDevice(await longStore(32 + 3)) // area 1 ends the table
    cow.failRead = (offset) => offset > (1 * 33 + 1) * 512 // every area after it fails
    const info = await readCowStore(cow)
    expect(info.exceptions).toHaveLength(35)
    expect(cow.ops.filter((o) => o.op === 'read').length).toBeGreaterThan(3) // it did read ahead
  })
})
