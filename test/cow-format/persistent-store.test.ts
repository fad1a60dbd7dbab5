// The persistent store's writer: fresh stores, allocation, group commit and its orderings,
// invalidation, merge steps (spec §9.4, §9.5, §9.7, §9.8).
import { describe, expect, test } from 'vitest'
import { CowFormatError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { PersistentStore } from '../../io/cow-format/persistent-store.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { asChunkSectors, asNewChunk, asOldChunk } from '../../io/units.js'
import { RecordingDevice } from '../support/recording-device.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'

const CS1 = asChunkSectors(1) // 512-byte chunks: 32 records per area, areas every 33 chunks
const CS8 = asChunkSectors(8)

async function fill(store: PersistentStore, count: number, firstOld = 100): Promise<Array<[number, number]>> {
  const table: Array<[number, number]> = []
  for (let i = 0; i < count; i++) {
    const chunk = store.allocate()
    if (chunk === undefined) throw new Error('full')
    expect(await store.commit(asOldChunk(firstOld + i), chunk, true)).toBe(true)
    table.push([firstOld + i, chunk])
  }
  return table
}

describe('a fresh store', () => {
  test('writes zeroed area 0 and then the header, each flushed', async () => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    await PersistentStore.create(cow, CS8)
    expect(cow.trace()).toEqual(['write@4096+4096', 'flush', 'write@0+4096', 'flush'])
    const header = await read(cow, 0, 512)
    expect(Buffer.from(header.subarray(0, 16)).toString('hex')).toBe('536e4170010000000100000008000000')
  })

  test('a crash after area 0 but before the header leaves "no store", not a half store', async () => {
    const image = new MemoryDevice(1 << 20)
    image.write(4096, new Uint8Array(4096).fill(0xaa)) // stale bytes where area 0 goes
    const cow = new RecordingDevice(image)
    cow.failWrite = (offset) => offset === 0 // the header write never lands
    await expect(PersistentStore.create(cow, CS8)).rejects.toThrow()
    await expect(readCowStore(image)).rejects.toMatchObject({ code: 'SNAPCOW_NO_STORE' })
  })

  test('reports the kernel\'s usage for a fresh store: 2cs/total 2cs', async () => {
    const store = await PersistentStore.create(new MemoryDevice(1 << 20), CS8)
    expect(store.usage()).toEqual({ allocatedSectors: 16, totalSectors: 2048, metadataSectors: 16 })
  })

  test('rejects a device with no room for one data chunk, naming the size, and writes nothing', async () => {
    const cow = new RecordingDevice(new MemoryDevice(3 * 4096 - 512))
    const error = await PersistentStore.create(cow, CS8).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CowFormatError)
    expect(error).toMatchObject({ code: 'SNAPCOW_COW_TOO_SMALL', field: 'size', value: 3 * 4096 - 512 })
    expect((error as Error).message).toContain(String(3 * 4096 - 512))
    expect(cow.writes()).toEqual([])
    await expect(PersistentStore.create(new MemoryDevice(3 * 4096), CS8)).resolves.toBeInstanceOf(PersistentStore)
  })

  test.each([0, 3, 12, 1 << 22, 1.5, -8])('rejects chunk size %s with a RangeError naming it, before any write', async (cs) => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    await expect(PersistentStore.create(cow, asChunkSectors(cs))).rejects.toThrow(RangeError)
    await expect(PersistentStore.create(cow, asChunkSectors(cs))).rejects.toThrow(String(cs))
    expect(cow.writes()).toEqual([])
  })
})

describe('allocation (§9.4)', () => {
  test('starts at chunk 2 and skips every metadata chunk', async () => {
    const store = await PersistentStore.create(new MemoryDevice(200 * 512), CS1)
    const chunks: number[] = []
    for (let c = store.allocate(); c !== undefined; c = store.allocate()) chunks.push(c)
    expect(chunks[0]).toBe(2)
    expect(chunks).not.toContain(34) // area 1
    expect(chunks).not.toContain(67) // area 2
    expect(chunks).not.toContain(199) // area 6, the device's last chunk
    expect(chunks.at(-1)).toBe(198)
    expect(chunks.length).toBe(200 - 8) // header and areas at 1, 34, 67, 100, 133, 166, 199
    expect(new Set(chunks).size).toBe(chunks.length)
  })

  test('hands out a chunk only if it fits wholly on the device', async () => {
    const store = await PersistentStore.create(new MemoryDevice(4 * 4096 + 512), CS8)
    expect(store.allocate()).toBe(2)
    expect(store.allocate()).toBe(3)
    expect(store.allocate()).toBeUndefined()
  })
})

describe('group commit (§9.5)', () => {
  test('commits waiting for allocations still in flight go to disk in one flushed write', async () => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    const store = await PersistentStore.create(cow, CS8)
    const chunks = [0, 1, 2, 3, 4].map(() => store.allocate()!)
    cow.ops.length = 0
    const results = chunks.map((c, i) => store.commit(asOldChunk(10 + i), c, true))
    expect(await Promise.all(results)).toEqual([true, true, true, true, true])
    expect(cow.trace()).toEqual(['flush', 'write@4096+4096', 'flush'])
    const info = await readCowStore(cow)
    expect(info.exceptions).toEqual([[10, 2], [11, 3], [12, 4], [13, 5], [14, 6]])
  })

  test('no lockstep: a ready commit is written at once while others still copy, and resolves only once durable', async () => {
    const cow = new ControlledDevice(new MemoryDevice(1 << 20), 'cow')
    cow.passThrough = () => true
    const store = await PersistentStore.create(cow, CS8)
    const [a, b, c] = [store.allocate()!, store.allocate()!, store.allocate()!] // c is still copying throughout
    cow.passThrough = () => false
    const mark = cow.submitted.length
    let aDone = false
    const first = store.commit(asOldChunk(1), a, true).then((ok) => { aDone = true; return ok })
    await settle()
    expect(cow.submitted.slice(mark)).toEqual(['flush']) // a's batch started although b and c are outstanding
    const second = store.commit(asOldChunk(2), b, true) // ready while a's batch is in flight: the next batch
    for (let i = 0; i < 2; i++) {
      expect(aDone).toBe(false) // not before its batch is durable
      cow.releaseAll()
      await settle()
    }
    cow.releaseAll() // a's closing flush
    expect(await first).toBe(true)
    let bDone = false
    void second.then(() => { bDone = true })
    for (let i = 0; i < 10 && !bDone; i++) { await settle(); cow.releaseAll() }
    expect(await second).toBe(true)
    expect(cow.submitted.slice(mark)).toEqual(['flush', 'write@4096+4096', 'flush', 'flush', 'write@4096+4096', 'flush'])
    expect((await readCowStore(cow.inner)).exceptions).toEqual([[1, a], [2, b]])
    void c
  })

  test('rejects a commit out of allocation order and writes nothing for it', async () => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    const store = await PersistentStore.create(cow, CS8)
    const a = store.allocate()!
    const b = store.allocate()!
    cow.ops.length = 0
    await expect(store.commit(asOldChunk(2), b, true)).rejects.toThrow(/out of allocation order/)
    await expect(store.commit(asOldChunk(9), asNewChunk(77), true)).rejects.toThrow(/out of allocation order/)
    expect(cow.writes()).toEqual([])
    // the rejected calls consumed nothing: the right order still works
    expect(await Promise.all([store.commit(asOldChunk(1), a, true), store.commit(asOldChunk(2), b, true)])).toEqual([true, true])
  })

  test('a full area: the next area is zeroed before the full one is written, and a flush lies between', async () => {
    const image = new MemoryDevice(200 * 512)
    await image.write(34 * 512, new Uint8Array(512).fill(0xee)) // stale bytes where area 1 will be
    const cow = new RecordingDevice(image)
    const store = await PersistentStore.create(cow, CS1)
    await fill(store, 31)
    cow.ops.length = 0
    await fill(store, 1, 500)
    expect(cow.trace()).toEqual(['write@17408+512', 'flush', 'write@512+512', 'flush'])
    expect(store.metadataAreas).toBe(2)
    const info = await readCowStore(image)
    expect(info.exceptions.length).toBe(32)
    expect(info.metadataAreas).toBe(2)
  })

  test('a copy that failed makes the store invalid: the batch is not written and every waiter hears false', async () => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    const store = await PersistentStore.create(cow, CS8)
    const a = store.allocate()!
    const b = store.allocate()!
    cow.ops.length = 0
    const results = [store.commit(asOldChunk(1), a, true), store.commit(asOldChunk(2), b, false)]
    expect(await Promise.all(results)).toEqual([false, false])
    expect(store.valid).toBe(false)
    expect(cow.writes()).toEqual([])
  })

  test('a failed area write makes the store invalid and the commit false', async () => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    const store = await PersistentStore.create(cow, CS8)
    cow.failWrite = (offset) => offset === 4096
    const a = store.allocate()!
    expect(await store.commit(asOldChunk(1), a, true)).toBe(false)
    expect(store.valid).toBe(false)
  })

  test('a COW that ends right after an area\'s last data chunk: as Linux, Invalid with E − 1 records on disk', async () => {
    const image = new MemoryDevice(34 * 512) // header, area 0, its 32 data chunks; no room for area 1
    const store = await PersistentStore.create(image, CS1)
    await fill(store, 31)
    const last = store.allocate()
    expect(last).toBe(33) // still handed out
    expect(await store.commit(asOldChunk(999), last!, true)).toBe(false) // zeroing area 1 fails
    expect(store.valid).toBe(false)
    expect((await readCowStore(image)).exceptions.length).toBe(31)
  })
})

describe('a loaded store', () => {
  test('appends after the last record, and a reload sees both halves', async () => {
    const image = new MemoryDevice(200 * 512)
    const first = await fill(await PersistentStore.create(image, CS1), 40)
    const again = await PersistentStore.load(image)
    expect(again.nextFreeChunk).toBe(43) // 2..33, 35..42 used; 34 is area 1
    const second = await fill(again, 5, 900)
    expect((await readCowStore(image)).exceptions).toEqual([...first, ...second])
  })

  test('forgets stale bytes after the terminator before appending', async () => {
    const image = new MemoryDevice(1 << 20)
    await fill(await PersistentStore.create(image, CS8), 2)
    // a stale record after the terminator (slot 3), as a torn write could leave
    const sector = await read(image, 4096, 512)
    const view = new DataView(sector.buffer)
    view.setUint32(3 * 16, 7777, true)
    view.setUint32(3 * 16 + 8, 9, true)
    await image.write(4096, sector)
    const store = await PersistentStore.load(image)
    await fill(store, 1, 50)
    expect((await readCowStore(image)).exceptions).toEqual([[100, 2], [101, 3], [50, 4]])
  })
})

test('invalidate rewrites the header with valid = 0 (rest of chunk 0 zero), durably, and keeps the records', async () => {
  const cow = new RecordingDevice(new MemoryDevice(1 << 20))
  const store = await PersistentStore.create(cow, CS8)
  await fill(store, 3)
  cow.ops.length = 0
  await store.invalidate()
  expect(cow.trace()).toEqual(['write@0+4096', 'flush'])
  expect(Buffer.from(await read(cow, 0, 4096)).toString('hex')).toBe('536e4170000000000100000008000000'.padEnd(8192, '0'))
  expect(await readCowStore(cow)).toMatchObject({ valid: false, exceptions: [] })
  expect((await readCowStore(cow, { scanInvalid: true })).exceptions.length).toBe(3)
})

describe('merge steps (§9.8)', () => {
  test('finds the last consecutive run within one area and clears it durably', async () => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    const store = await PersistentStore.create(cow, CS8)
    for (const old of [7, 20, 21, 22]) await store.commit(asOldChunk(old), store.allocate()!, true)
    expect(await store.prepareMerge()).toEqual({ lastOld: 22, lastNew: 5, count: 3 })
    cow.ops.length = 0
    await store.commitMerge(3)
    expect(cow.trace()).toEqual(['flush', 'write@4096+4096', 'flush'])
    expect((await readCowStore(cow)).exceptions).toEqual([[7, 2]])
    expect(store.usage().allocatedSectors).toBe(3 * 8) // area_location(0) + 1 + 1
    expect(await store.prepareMerge()).toEqual({ lastOld: 7, lastNew: 2, count: 1 })
    await store.commitMerge(1)
    expect(await store.prepareMerge()).toBeUndefined()
    expect(store.usage()).toMatchObject({ allocatedSectors: 16, metadataSectors: 16 })
  })

  test('a failed merge commit leaves the in-memory table as the disk has it', async () => {
    const cow = new RecordingDevice(new MemoryDevice(1 << 20))
    const store = await PersistentStore.create(cow, CS8)
    await fill(store, 2)
    await store.prepareMerge()
    cow.failWrite = () => true
    await expect(store.commitMerge(2)).rejects.toMatchObject({ code: 'SNAPCOW_IO' })
    cow.failWrite = () => false
    expect(await store.prepareMerge()).toEqual({ lastOld: 101, lastNew: 3, count: 2 })
  })

  test('rejects a count larger than the run the area holds', async () => {
    const store = await PersistentStore.create(new MemoryDevice(1 << 20), CS8)
    await fill(store, 2)
    await expect(store.commitMerge(3)).rejects.toThrow(RangeError)
  })
})

async function read(device: { read(o: number, b: Uint8Array): Promise<void> }, offset: number, length: number) {
  const buffer = new Uint8Array(length)
  await device.read(offset, buffer)
  return buffer
}
