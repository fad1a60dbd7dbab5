// Validation and limits (spec §15, api.md, docs/errors.md): every rule that applies to the
// object API rejects before any I/O that could change a device. COW and origin devices are
// wrapped in RecordingDevice so each test can assert that nothing was written.
//
// Not applicable: snapcow has no table-line parser, so these §15 rules have no object-API form:
//  - "snapshot needs at least 4 arguments" (argument count);
//  - "store word starts with P or N (any case); O is the only persistent option; options
//    after N are ignored" (store letters: the API has `persistent` / `overflow` booleans,
//    whose type and combination are checked below instead);
//  - "chunk size is a decimal number" (the API takes a number of bytes);
//  - "feature count 0–2, names as listed, passdown only with zeroes" (no features in the API).
// Deliberately different: the kernel reads a chunk size of 0 as "from the header, or the
// default"; the object API omits `chunkSize` for the default (4096 B, §18), so 0 is refused.
// Trivially satisfied: "chunk size a multiple of the logical block size of COW and origin":
// every snapcow device has 512-byte sectors, which the multiple-of-512 rule below covers.
import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { CowFormatError, SnapcowError } from '../../io/errors.js'
import { encodeHeaderChunk } from '../../io/cow-format/header.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'
import { RecordingDevice } from '../support/recording-device.js'
import { pattern } from '../support/bytes.js'

const CHUNK = 4096
const ORIGIN_BYTES = 64 * CHUNK

async function setUp() {
  const originDevice = new RecordingDevice(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
  const origin = await openOrigin(originDevice)
  const cow = new RecordingDevice(new MemoryDevice(32 * CHUNK))
  return { origin, originDevice, cow }
}

/** The value as its own token in the message: 1 must not match inside 512, nor 1.5 inside 11.5. */
function namesValue(message: string, value: number): boolean {
  const token = String(value).replace(/[.+]/g, '\\$&')
  return new RegExp(`(?<![\\d.])${token}(?!\\.?\\d)`).test(message)
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const error = await p.then(() => undefined, (e: unknown) => e)
  expect(error, 'expected a rejection').toBeInstanceOf(Error)
  return error as Error
}

/** A COW device holding a valid store made by snapcow (on a scratch origin). */
async function cowWithStore(): Promise<MemoryDevice> {
  const scratch = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
  const cow = new MemoryDevice(32 * CHUNK)
  await scratch.createSnapshot(cow, { chunkSize: CHUNK })
  await scratch.write(3 * CHUNK, new Uint8Array(CHUNK).fill(9))
  await scratch.close()
  return cow
}

/** A COW device whose first 16 bytes are the given header fields (then a zeroed area 0). */
async function cowWithHeader(fields: { magic?: number; valid?: number; version?: number; chunkSectors?: number }): Promise<MemoryDevice> {
  const bytes = encodeHeaderChunk(CHUNK, { valid: true, chunkSectors: CHUNK / 512 })
  const view = new DataView(bytes.buffer)
  if (fields.magic !== undefined) view.setUint32(0, fields.magic, true)
  if (fields.valid !== undefined) view.setUint32(4, fields.valid, true)
  if (fields.version !== undefined) view.setUint32(8, fields.version, true)
  if (fields.chunkSectors !== undefined) view.setUint32(12, fields.chunkSectors, true)
  const device = new MemoryDevice(32 * CHUNK)
  await device.write(0, bytes)
  return device
}

describe('createSnapshot chunkSize (§15: power of two, whole sectors, ≤ 2^21 sectors)', () => {
  const illegal: Array<[string, number]> = [
    ['not a multiple of 512', 1000],
    ['less than one sector', 256],
    ['not a power of two', 3072],
    ['zero', 0],
    ['negative', -4096],
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['above 1 GiB (2^31 bytes = 2^22 sectors)', 2 ** 31],
  ]
  describe.each([['persistent', true], ['transient', false]] as const)('%s', (_kind, persistent) => {
    test.each(illegal)('%s (%d) → RangeError naming the value, before any I/O', async (_why, chunkSize) => {
      const { origin, originDevice, cow } = await setUp()
      const error = await rejection(origin.createSnapshot(cow, { chunkSize, persistent }))
      expect(error).toBeInstanceOf(RangeError)
      expect(namesValue(error.message, chunkSize), `message "${error.message}" does not name ${chunkSize}`).toBe(true)
      expect(cow.ops).toEqual([])
      expect(originDevice.ops).toEqual([])
      expect(origin.snapshots).toEqual([])
    })
  })

  test.each([['a string', '4096', 'string "4096"'], ['a boolean', true, 'boolean true'], ['a bigint', 4096n, 'bigint 4096']] as const)(
    '%s (%s) → TypeError naming the type and the value, before any I/O', async (_why, chunkSize, named) => {
      const { origin, originDevice, cow } = await setUp()
      const error = await rejection(origin.createSnapshot(cow, { chunkSize: chunkSize as unknown as number }))
      expect(error).toBeInstanceOf(TypeError)
      expect(error.message).toContain(`chunkSize must be a number of bytes, got ${named}`)
      expect(cow.ops).toEqual([])
      expect(originDevice.ops).toEqual([])
      expect(origin.snapshots).toEqual([])
    })

  test.each([['persistent', true], ['transient', false]] as const)('%s: the largest legal chunk size, 2^30 bytes (2^21 sectors), passes the check (the COW is then too small)', async (_kind, persistent) => {
    const { origin, cow } = await setUp()
    const error = await rejection(origin.createSnapshot(cow, { chunkSize: 2 ** 30, persistent }))
    expect(error).toBeInstanceOf(CowFormatError)
    expect(error).toMatchObject({ code: 'SNAPCOW_COW_TOO_SMALL', field: 'size', value: cow.size })
    expect(cow.writes()).toEqual([])
  })

  test('the smallest legal chunk size, 512, is accepted', async () => {
    const { origin, cow } = await setUp()
    const snapshot = await origin.createSnapshot(cow, { chunkSize: 512 })
    expect(snapshot.chunkSize).toBe(512)
    expect(snapshot.status().line).toBe(`0 ${ORIGIN_BYTES / 512} snapshot 2/${cow.size / 512} 2`)
  })
})

describe('createSnapshot store options', () => {
  test.each([
    ['persistent is not a boolean', { persistent: 'yes' }],
    ['persistent is 1', { persistent: 1 }],
    ['overflow is not a boolean', { overflow: 'true' }],
    ['overflow is 1', { overflow: 1 }],
    ['overflow: true with persistent: false (there is no "NO" store)', { persistent: false, overflow: true }],
  ] as const)('%s → TypeError, before any I/O', async (_why, options) => {
    const { origin, originDevice, cow } = await setUp()
    const error = await rejection(origin.createSnapshot(cow, { chunkSize: CHUNK, ...(options as object) }))
    expect(error).toBeInstanceOf(TypeError)
    expect(error.message).toMatch(/persistent|overflow/)
    expect(cow.ops).toEqual([])
    expect(originDevice.ops).toEqual([])
  })

  test('loadSnapshot: overflow not a boolean → TypeError, before any I/O', async () => {
    const { origin } = await setUp()
    const cow = new RecordingDevice(await cowWithStore())
    const error = await rejection(origin.loadSnapshot(cow, { overflow: 'yes' as never }))
    expect(error).toBeInstanceOf(TypeError)
    expect(cow.ops).toEqual([])
  })
})

describe('§15 the COW device differs from the origin device and from other snapshots\' COWs', () => {
  test('createSnapshot with the origin device as the COW → TypeError, nothing written', async () => {
    const { origin, originDevice } = await setUp()
    const error = await rejection(origin.createSnapshot(originDevice, { chunkSize: CHUNK }))
    expect(error).toBeInstanceOf(TypeError)
    expect(originDevice.ops).toEqual([])
  })

  test('loadSnapshot with the origin device as the COW → TypeError, nothing read or written', async () => {
    const { origin, originDevice } = await setUp()
    const error = await rejection(origin.loadSnapshot(originDevice))
    expect(error).toBeInstanceOf(TypeError)
    expect(originDevice.ops).toEqual([])
  })

  test('createSnapshot with the origin volume itself as the COW → TypeError, nothing written', async () => {
    // The Origin volume is the origin device seen through snapcow: using it as a COW would
    // write a store header over the origin's first chunk and deadlock the first copy.
    const { origin, originDevice } = await setUp()
    const error = await rejection(origin.createSnapshot(origin, { chunkSize: CHUNK }))
    expect(error).toBeInstanceOf(TypeError)
    expect(originDevice.writes()).toEqual([])
  })

  test('createSnapshot with a snapshot of the same origin as the COW → TypeError, nothing written', async () => {
    const { origin, originDevice, cow } = await setUp()
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    originDevice.ops.length = 0
    cow.ops.length = 0
    expect(await rejection(origin.createSnapshot(snapshot, { chunkSize: CHUNK }))).toBeInstanceOf(TypeError)
    expect(originDevice.writes()).toEqual([])
    expect(cow.writes()).toEqual([])
  })

  test('the same COW for two snapshots → TypeError (createSnapshot and loadSnapshot), nothing written', async () => {
    const { origin, cow } = await setUp()
    await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.ops.length = 0
    expect(await rejection(origin.createSnapshot(cow, { chunkSize: CHUNK }))).toBeInstanceOf(TypeError)
    expect(await rejection(origin.loadSnapshot(cow))).toBeInstanceOf(TypeError)
    expect(cow.ops).toEqual([])
    expect(origin.snapshots.length).toBe(1)
  })
})

describe('stores: create refuses an existing one, load refuses what is not one (api.md, docs/errors.md)', () => {
  test('createSnapshot on a COW that holds a store → SNAPCOW_STORE_EXISTS, nothing written', async () => {
    const { origin } = await setUp()
    const image = await cowWithStore()
    const before = image.snapshotBytes()
    const cow = new RecordingDevice(image)
    const error = await rejection(origin.createSnapshot(cow, { chunkSize: CHUNK }))
    expect(error).toBeInstanceOf(SnapcowError)
    expect(error).toMatchObject({ code: 'SNAPCOW_STORE_EXISTS' })
    expect(cow.writes()).toEqual([])
    expect(Buffer.compare(image.snapshotBytes(), before)).toBe(0)
    expect(origin.snapshots).toEqual([])
  })

  test.each([
    ['a zeroed device (no store)', async () => new MemoryDevice(32 * CHUNK), 'SNAPCOW_NO_STORE', 'magic', 0],
    ['a foreign magic', () => cowWithHeader({ magic: 0x12345678 }), 'SNAPCOW_BAD_MAGIC', 'magic', undefined],
    ['version 2', () => cowWithHeader({ version: 2 }), 'SNAPCOW_BAD_VERSION', 'version', 2],
    ['header chunk size 0', () => cowWithHeader({ chunkSectors: 0 }), 'SNAPCOW_BAD_CHUNK_SIZE', 'chunk_size', 0],
    ['header chunk size 3 (not a power of two)', () => cowWithHeader({ chunkSectors: 3 }), 'SNAPCOW_BAD_CHUNK_SIZE', 'chunk_size', 3],
    ['header chunk size 2^22 sectors (too large)', () => cowWithHeader({ chunkSectors: 2 ** 22 }), 'SNAPCOW_BAD_CHUNK_SIZE', 'chunk_size', 2 ** 22],
  ] as const)('loadSnapshot on %s → its error (code, field, value), nothing written', async (_what, make, code, field, value) => {
    const { origin, originDevice } = await setUp()
    const cow = new RecordingDevice(await make())
    const error = await rejection(origin.loadSnapshot(cow))
    expect(error).toBeInstanceOf(CowFormatError)
    expect(error).toMatchObject({ code, field })
    if (value !== undefined) expect((error as CowFormatError).value).toBe(value)
    expect(cow.writes()).toEqual([])
    expect(originDevice.writes()).toEqual([])
    expect(origin.snapshots).toEqual([])
  })

  test('loadSnapshot on a foreign magic names the magic in hex', async () => {
    const { origin } = await setUp()
    const error = await rejection(origin.loadSnapshot(await cowWithHeader({ magic: 0x12345678 })))
    expect(error).toMatchObject({ code: 'SNAPCOW_BAD_MAGIC', field: 'magic' })
    expect(String((error as CowFormatError).value).toLowerCase()).toContain('12345678')
  })

  test.each([
    ['persistent: header and area 0 but no data chunk', true, 2 * CHUNK],
    ['persistent: one sector', true, 512],
    ['transient: less than one chunk', false, CHUNK - 512],
  ] as const)('a COW too small for one data chunk (%s) → SNAPCOW_COW_TOO_SMALL, nothing written', async (_what, persistent, size) => {
    const { origin } = await setUp()
    const cow = new RecordingDevice(new MemoryDevice(size))
    const error = await rejection(origin.createSnapshot(cow, { chunkSize: CHUNK, persistent }))
    expect(error).toBeInstanceOf(CowFormatError)
    expect(error).toMatchObject({ code: 'SNAPCOW_COW_TOO_SMALL', field: 'size', value: size })
    expect(cow.writes()).toEqual([])
  })
})

describe('§15: one merging snapshot per origin', () => {
  /** Two persistent snapshots, each with exceptions to merge; A's COW can be held. */
  async function twoSnapshots() {
    const origin = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const cowA = new ControlledDevice(new MemoryDevice(32 * CHUNK), 'cow-a')
    cowA.passThrough = () => true
    const cowB = new RecordingDevice(new MemoryDevice(32 * CHUNK))
    const a = await origin.createSnapshot(cowA, { chunkSize: CHUNK })
    const b = await origin.createSnapshot(cowB, { chunkSize: CHUNK })
    for (let i = 0; i < 4; i++) await origin.write(i * CHUNK, new Uint8Array(CHUNK).fill(2))
    await a.write(20 * CHUNK, new Uint8Array(CHUNK).fill(3))
    await b.write(21 * CHUNK, new Uint8Array(CHUNK).fill(4))
    cowB.ops.length = 0
    return { origin, a, b, cowA, cowB }
  }

  test('merge() of a second snapshot while one is merging → SNAPCOW_MERGING, its COW untouched', async () => {
    const { a, b, cowA, cowB } = await twoSnapshots()
    cowA.passThrough = () => false // A's merge stops at its first COW request
    const merging = a.merge()
    await settle()
    await settle()
    expect(a.status().state).toBe('merging')
    // A's merge made B copy the chunk it is about to overwrite (§12 step 3); that is done now.
    expect(b.chunkState(20)).toBe('Completed')
    cowB.ops.length = 0
    const error = await rejection(b.merge())
    expect(error).toBeInstanceOf(SnapcowError)
    expect(error).toMatchObject({ code: 'SNAPCOW_MERGING' })
    expect(cowB.ops).toEqual([])
    expect(b.status().state).toBe('active')
    cowA.passThrough = () => true
    cowA.releaseAll()
    await merging
  })

  test('two merge() calls started together: exactly one runs, the other rejects with SNAPCOW_MERGING', async () => {
    const { origin, a, b, cowB } = await twoSnapshots()
    const results = await Promise.allSettled([a.merge(), b.merge()])
    const rejected = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []))
    expect(rejected.length, `both merges ran: ${results.map((r) => r.status).join(', ')}`).toBe(1)
    expect(rejected[0]).toMatchObject({ code: 'SNAPCOW_MERGING' })
    expect(results[1]!.status).toBe('rejected') // A asked first
    expect(await readCowStore(cowB.inner)).toMatchObject({ valid: true })
    expect((await readCowStore(cowB.inner)).exceptions.map(([old]) => old)).toContain(21) // B's table is untouched
    // The origin is A's content: B's write to chunk 21 never reached it.
    const chunk21 = new Uint8Array(CHUNK)
    await origin.read(21 * CHUNK, chunk21)
    expect(chunk21.every((x, i) => x === pattern(21 * CHUNK, CHUNK, 1)[i])).toBe(true)
  })
})

describe('bad I/O on the volumes (api.md): RangeError naming the value, nothing read or written', () => {
  // [what, offset, length, the value the message must name]
  const bad: Array<[string, number, number, number]> = [
    ['misaligned offset', 513, 512, 513],
    ['misaligned length', 0, 100, 100],
    ['offset at the end', ORIGIN_BYTES, 512, ORIGIN_BYTES],
    ['request straddling the end', ORIGIN_BYTES - 512, 1024, ORIGIN_BYTES - 512],
    ['negative offset', -512, 512, -512],
    ['non-integer offset', 1.5, 512, 1.5],
  ]

  describe.each(['origin', 'snapshot'] as const)('%s', (volume) => {
    async function volumeAndDevices() {
      const { origin, originDevice, cow } = await setUp()
      const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
      await origin.write(0, new Uint8Array(CHUNK)) // chunk 0 remapped: the snapshot has COW data too
      originDevice.ops.length = 0
      cow.ops.length = 0
      return { device: (volume === 'origin' ? origin : snapshot) as BlockDevice, originDevice, cow }
    }

    test.each(bad)('write: %s', async (_what, offset, length, value) => {
      const { device, originDevice, cow } = await volumeAndDevices()
      const error = await rejection(device.write(offset, new Uint8Array(length).fill(7)))
      expect(error).toBeInstanceOf(RangeError)
      expect(namesValue(error.message, value), `message "${error.message}" does not name ${value}`).toBe(true)
      expect(originDevice.ops).toEqual([])
      expect(cow.ops).toEqual([])
    })

    test.each(bad)('read: %s', async (_what, offset, length, value) => {
      const { device, originDevice, cow } = await volumeAndDevices()
      const buffer = new Uint8Array(length).fill(0xa5)
      const error = await rejection(device.read(offset, buffer))
      expect(error).toBeInstanceOf(RangeError)
      expect(namesValue(error.message, value), `message "${error.message}" does not name ${value}`).toBe(true)
      expect(buffer.every((b) => b === 0xa5)).toBe(true)
      expect(originDevice.ops).toEqual([])
      expect(cow.ops).toEqual([])
    })
  })
})

describe('snapshot.chunkState(chunk) takes a chunk of the snapshot only', () => {
  const chunks = ORIGIN_BYTES / CHUNK
  test.each([
    ['-1', -1],
    ['1.5', 1.5],
    ['NaN', NaN],
    [`${chunks} (one past the end)`, chunks],
    ['2^53', 2 ** 53],
  ] as const)('chunkState(%s) throws a RangeError', async (_what, chunk) => {
    const { origin, cow } = await setUp()
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    expect(() => snapshot.chunkState(chunk)).toThrow(RangeError)
  })

  test('chunkState of the first and the last chunk works', async () => {
    const { origin, cow } = await setUp()
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    await origin.write((chunks - 1) * CHUNK, new Uint8Array(512))
    expect(snapshot.chunkState(0)).toBe('None')
    expect(snapshot.chunkState(chunks - 1)).toBe('Completed')
  })
})
