// Invalid and Overflow (spec §13, status words §14, api.md "A COW device that fills up"): one
// test per row of the §13 table and per bullet under it, through the public object API.
//
// Row "memory for the completed record unavailable" cannot be provoked: snapcow allocates the
// completed-table entry with ordinary JS memory, and an allocation failure there is a process
// crash (no kernel-style -ENOMEM path exists to inject), so it has no test.
import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { encodeHeaderChunk } from '../../io/cow-format/header.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'
import { RecordingDevice } from '../support/recording-device.js'
import { firstDifference, pattern, readAt } from '../support/bytes.js'

const CHUNK = 4096
const SECTORS_PER_CHUNK = CHUNK / 512
const ORIGIN_CHUNKS = 32
const ORIGIN_BYTES = ORIGIN_CHUNKS * CHUNK
const ORIGIN_SECTORS = ORIGIN_BYTES / 512
const INVALID_LINE = `0 ${ORIGIN_SECTORS} snapshot Invalid`

/** A persistent COW with room for `dataChunks` data chunks (header and area 0 first, §9.1). */
const persistentCow = (dataChunks: number) => new MemoryDevice((2 + dataChunks) * CHUNK)

/** An origin holding pattern(·, seed 1), and a model of what it holds. */
async function makeOrigin(device?: (inner: MemoryDevice) => BlockDevice) {
  const image = MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1))
  const origin = await openOrigin(device ? device(image) : image)
  return { origin, image, model: pattern(0, ORIGIN_BYTES, 1) }
}

/** The `valid` field of the header as it is on the device now (bytes 4–7, §9.2). */
async function headerValidField(cow: BlockDevice): Promise<number> {
  const header = await readAt(cow, 0, 512)
  return new DataView(header.buffer).getUint32(4, true)
}

async function expectRejects(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const error = await p.then(() => undefined, (e: unknown) => e)
  expect(error, `expected a rejection with ${code}`).toBeInstanceOf(Error)
  expect(error).toMatchObject({ code })
  if (message) expect((error as Error).message).toMatch(message)
}

async function expectSnapshotInvalid(snapshot: Snapshot): Promise<void> {
  expect(snapshot.status().state).toBe('invalid')
  expect(snapshot.status().line).toBe(INVALID_LINE)
  await expectRejects(snapshot.read(0, new Uint8Array(512)), 'SNAPCOW_INVALID', /invalid/)
  await expectRejects(snapshot.write(0, new Uint8Array(512)), 'SNAPCOW_INVALID', /invalid/)
}

/** Writes to the origin volume and to the model. */
async function originWrite(origin: { write(o: number, d: Uint8Array): Promise<void> }, model: Uint8Array, offset: number, data: Uint8Array) {
  await origin.write(offset, data)
  model.set(data, offset)
}

async function expectContent(device: BlockDevice, model: Uint8Array, what: string): Promise<void> {
  expect(firstDifference(await readAt(device, 0, model.length), model), what).toBeUndefined()
}

describe('§13 row 1: copy to COW failed, metadata write failed → Invalid', () => {
  test.each([
    ['P', true, (offset: number) => offset >= 2 * CHUNK],
    ['N', false, () => true],
  ] as const)('store %s: a failed copy write makes the snapshot Invalid and the origin write still lands', async (_store, persistent, failing) => {
    const { origin, image, model } = await makeOrigin()
    const cow = new RecordingDevice(persistentCow(14))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK, persistent })
    cow.failWrite = failing // every data-chunk write rejects from here on
    await originWrite(origin, model, 5 * CHUNK, pattern(5 * CHUNK, CHUNK, 2)) // row 13: re-run, now skips S
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin')
    if (persistent) expect((await readCowStore(cow.inner)).valid).toBe(false) // §13: header valid = 0
  })

  test('a copy whose origin read fails makes the snapshot Invalid; the origin write lands', async () => {
    const { origin, image, model } = await makeOrigin((inner) => new RecordingDevice(inner))
    const originDevice = origin.device as RecordingDevice
    const cow = persistentCow(14)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    originDevice.failRead = (offset, length) => offset === 5 * CHUNK && length === CHUNK
    await originWrite(origin, model, 5 * CHUNK, pattern(5 * CHUNK, CHUNK, 2))
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin')
    expect((await readCowStore(cow)).valid).toBe(false)
  })

  test('a partial snapshot write whose copy fails rejects with SNAPCOW_INVALID (row 13 fails held writes)', async () => {
    const { origin, image, model } = await makeOrigin()
    const cow = new RecordingDevice(persistentCow(14))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.failWrite = (offset) => offset >= 2 * CHUNK
    await expectRejects(snapshot.write(5 * CHUNK + 1024, new Uint8Array(512).fill(9)), 'SNAPCOW_INVALID', /invalid/)
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin (untouched by snapshot writes)')
  })

  test('a whole-chunk snapshot write that fails on the COW rejects and makes the snapshot Invalid', async () => {
    const { origin } = await makeOrigin()
    const cow = new RecordingDevice(persistentCow(14))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.failWrite = (offset) => offset >= 2 * CHUNK
    await expectRejects(snapshot.write(5 * CHUNK, new Uint8Array(CHUNK).fill(9)), 'SNAPCOW_INVALID')
    await expectSnapshotInvalid(snapshot)
  })

  test('a failed metadata area write (the area at byte offset chunkSize) makes the snapshot Invalid; the origin write lands', async () => {
    const { origin, image, model } = await makeOrigin()
    const cow = new RecordingDevice(persistentCow(14))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.failWrite = (offset) => offset === CHUNK
    await originWrite(origin, model, 5 * CHUNK, pattern(5 * CHUNK, CHUNK, 2))
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin')
    expect(await headerValidField(cow.inner)).toBe(0)
    expect((await readCowStore(cow.inner)).valid).toBe(false)
  })

  test('a snapshot write whose commit fails rejects with SNAPCOW_INVALID', async () => {
    const { origin } = await makeOrigin()
    const cow = new RecordingDevice(persistentCow(14))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.failWrite = (offset) => offset === CHUNK
    await expectRejects(snapshot.write(5 * CHUNK, new Uint8Array(CHUNK).fill(9)), 'SNAPCOW_INVALID')
    await expectSnapshotInvalid(snapshot)
  })

  test('§9.5 edge: a COW ending right after an area\'s last data chunk goes Invalid when that area fills (zeroing the next area fails)', async () => {
    const { origin, image, model } = await makeOrigin()
    const perArea = 512 / 16 // E = 32 records for 512-byte chunks
    const cow = new MemoryDevice((2 + perArea) * 512) // header, area 0, its 32 data chunks, nothing after
    const snapshot = await origin.createSnapshot(cow, { chunkSize: 512 })
    for (let i = 0; i < perArea - 1; i++) await originWrite(origin, model, i * 1024, pattern(i * 1024, 512, 3))
    expect(snapshot.status().state).toBe('active')
    await originWrite(origin, model, (perArea - 1) * 1024, pattern((perArea - 1) * 1024, 512, 3)) // takes the last data chunk
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin')
    const info = await readCowStore(cow, { scanInvalid: true })
    expect(info.valid).toBe(false)
    expect(info.exceptions.length).toBe(perArea - 1) // the last record is never written
  })
})

describe('§13 row 2: COW full while an origin write needs a new exception → Invalid, always', () => {
  test.each([
    ['P', { persistent: true, overflow: false }],
    ['PO', { persistent: true, overflow: true }],
    ['N', { persistent: false, overflow: false }],
  ] as const)('store %s: the snapshot becomes Invalid and the origin write succeeds', async (_store, options) => {
    const { origin, image, model } = await makeOrigin()
    const cow = options.persistent ? persistentCow(1) : new MemoryDevice(CHUNK)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK, ...options })
    await originWrite(origin, model, 1 * CHUNK, pattern(CHUNK, CHUNK, 2)) // takes the only data chunk
    expect(snapshot.status().state).toBe('active')
    await originWrite(origin, model, 5 * CHUNK, pattern(5 * CHUNK, 1024, 2)) // needs a second: no room
    if (options.persistent) expect(await headerValidField(cow)).toBe(0) // on disk the moment the write resolves
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin')
    if (options.persistent) expect((await readCowStore(cow)).valid).toBe(false)
  })

  test('the header rewrite (valid = 0) is written and flushed before the origin write reaches the origin', async () => {
    const log: string[] = []
    const logged = (inner: BlockDevice, name: string): BlockDevice => ({
      get size() { return inner.size },
      read: (offset, buffer) => inner.read(offset, buffer),
      write: async (offset, data) => { log.push(`${name} write@${offset} start`); await inner.write(offset, data); log.push(`${name} write@${offset} done`) },
      flush: async () => { log.push(`${name} flush start`); await inner.flush(); log.push(`${name} flush done`) },
      close: () => inner.close(),
    })
    const { origin } = await makeOrigin((inner) => logged(inner, 'origin'))
    const cowImage = persistentCow(1)
    await origin.createSnapshot(logged(cowImage, 'cow'), { chunkSize: CHUNK, overflow: true })
    await origin.write(1 * CHUNK, new Uint8Array(CHUNK))
    log.length = 0
    await origin.write(5 * CHUNK, new Uint8Array(CHUNK).fill(7))
    const header = log.indexOf('cow write@0 done')
    const flush = log.indexOf('cow flush done', header)
    const originWrite = log.indexOf(`origin write@${5 * CHUNK} start`)
    expect(header, log.join(', ')).toBeGreaterThanOrEqual(0)
    expect(flush, `no flush after the header rewrite: ${log.join(', ')}`).toBeGreaterThan(header)
    expect(originWrite, log.join(', ')).toBeGreaterThan(flush)
  })
})

describe('§13 rows 3–4: COW full while a snapshot write needs a new exception', () => {
  test('store P: the write rejects and the snapshot becomes Invalid (header valid = 0)', async () => {
    const { origin, image, model } = await makeOrigin()
    const cow = persistentCow(1)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    await snapshot.write(1 * CHUNK, pattern(CHUNK, CHUNK, 4))
    await expectRejects(snapshot.write(5 * CHUNK, pattern(5 * CHUNK, CHUNK, 4)), 'SNAPCOW_INVALID', /invalid/)
    await expectSnapshotInvalid(snapshot)
    expect((await readCowStore(cow)).valid).toBe(false)
    await expectContent(image, model, 'origin')
  })

  test('store N: the write rejects and the snapshot becomes Invalid', async () => {
    const { origin, image, model } = await makeOrigin()
    const snapshot = await origin.createSnapshot(new MemoryDevice(CHUNK), { chunkSize: CHUNK, persistent: false })
    await snapshot.write(1 * CHUNK, pattern(CHUNK, CHUNK, 4))
    await expectRejects(snapshot.write(5 * CHUNK + 512, pattern(5 * CHUNK, 512, 4)), 'SNAPCOW_INVALID', /invalid/)
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin')
  })

  /**
   * PO with room for 3 data chunks: an origin write to chunk 0 (copy), a partial snapshot write
   * to chunk 1 and a whole-chunk one to chunk 2 fill it; a snapshot write to chunk 3 overflows.
   */
  async function overflowed() {
    const { origin, image, model } = await makeOrigin()
    const snapModel = model.slice()
    const cow = persistentCow(3)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK, overflow: true })
    await originWrite(origin, model, 0, pattern(0, CHUNK, 2))
    await originWrite(snapshot, snapModel, CHUNK + 1024, pattern(CHUNK + 1024, 1024, 4))
    await originWrite(snapshot, snapModel, 2 * CHUNK, pattern(2 * CHUNK, CHUNK, 4))
    expect(snapshot.status().state).toBe('active')
    await expectRejects(snapshot.write(3 * CHUNK, pattern(3 * CHUNK, 512, 4)), 'SNAPCOW_OVERFLOW', /overflow/)
    return { origin, image, model, snapshot, snapModel, cow }
  }

  test('store PO: the write rejects with SNAPCOW_OVERFLOW and the status says Overflow', async () => {
    const { snapshot, cow } = await overflowed()
    expect(snapshot.status().state).toBe('overflow')
    expect(snapshot.status().line).toBe(`0 ${ORIGIN_SECTORS} snapshot Overflow`)
    expect(snapshot.status().line.endsWith(' Overflow')).toBe(true)
    expect(await headerValidField(cow)).toBe(1) // Overflow is not recorded on disk
  })

  test('store PO, Overflow: later snapshot writes reject with SNAPCOW_OVERFLOW, into remapped chunks too', async () => {
    const { snapshot, snapModel } = await overflowed()
    expect(snapshot.chunkState(1)).toBe('Completed')
    expect(snapshot.chunkState(2)).toBe('Completed')
    await expectRejects(snapshot.write(2 * CHUNK, new Uint8Array(CHUNK)), 'SNAPCOW_OVERFLOW') // remapped (D)
    await expectRejects(snapshot.write(1 * CHUNK, new Uint8Array(512)), 'SNAPCOW_OVERFLOW') // remapped (D)
    await expectRejects(snapshot.write(9 * CHUNK, new Uint8Array(512)), 'SNAPCOW_OVERFLOW') // not remapped (A)
    await expectContent(snapshot, snapModel, 'snapshot (the rejected writes changed nothing)')
  })

  test('store PO, Overflow: snapshot reads still work and return the snapshot\'s data', async () => {
    const { snapshot, snapModel, image, model } = await overflowed()
    await expectContent(snapshot, snapModel, 'snapshot')
    await expectContent(image, model, 'origin')
  })

  test('store PO, Overflow: origin writes into remapped chunks work and the status stays Overflow', async () => {
    const { origin, snapshot, snapModel, image, model } = await overflowed()
    await originWrite(origin, model, 0, pattern(0, CHUNK, 5)) // chunk 0: D
    await originWrite(origin, model, 2 * CHUNK + 512, pattern(2 * CHUNK + 512, 512, 5)) // chunk 2: D
    expect(snapshot.status().state).toBe('overflow')
    await expectContent(image, model, 'origin')
    await expectContent(snapshot, snapModel, 'snapshot')
  })

  test('store PO, Overflow: an origin write that needs a new exception makes it Invalid; the origin write lands', async () => {
    const { origin, snapshot, image, model, cow } = await overflowed()
    await originWrite(origin, model, 7 * CHUNK, pattern(7 * CHUNK, CHUNK, 5))
    expect(await headerValidField(cow)).toBe(0)
    await expectSnapshotInvalid(snapshot)
    await expectContent(image, model, 'origin')
  })

  test('store PO: Overflow is not on disk: a reload is active and shows the full usage', async () => {
    const { origin, snapshot, snapModel, cow } = await overflowed()
    await snapshot.drop()
    const again = await origin.loadSnapshot(cow, { overflow: true })
    const used = 5 * SECTORS_PER_CHUNK // next_free = 5: header, area 0 and 3 data chunks
    expect(again.status()).toMatchObject({ state: 'active', allocatedSectors: used, totalSectors: used, metadataSectors: 2 * SECTORS_PER_CHUNK })
    expect(again.status().line).toBe(`0 ${ORIGIN_SECTORS} snapshot ${used}/${used} ${2 * SECTORS_PER_CHUNK}`)
    await expectContent(again, snapModel, 'reloaded snapshot')
  })
})

describe('§13 row 5: header valid = 0 at load → Invalid', () => {
  test('the snapshot loads Invalid: status line "Invalid", reads and writes reject with SNAPCOW_INVALID, origin writes skip it', async () => {
    // A real store with one exception, then invalidated on disk (§9.7).
    const scratch = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)))
    const cowImage = persistentCow(14)
    await scratch.createSnapshot(cowImage, { chunkSize: CHUNK })
    await scratch.write(3 * CHUNK, new Uint8Array(CHUNK))
    await scratch.close()
    await cowImage.write(0, encodeHeaderChunk(CHUNK, { valid: false, chunkSectors: SECTORS_PER_CHUNK }))

    const { origin, image, model } = await makeOrigin()
    const cow = new RecordingDevice(cowImage)
    const snapshot = await origin.loadSnapshot(cow)
    expect(snapshot.status().line).toBe(INVALID_LINE)
    await expectSnapshotInvalid(snapshot)
    await expectRejects(snapshot.read(3 * CHUNK, new Uint8Array(CHUNK)), 'SNAPCOW_INVALID', /invalid/)
    cow.ops.length = 0
    await originWrite(origin, model, 5 * CHUNK, pattern(5 * CHUNK, CHUNK, 2))
    expect(cow.ops).toEqual([]) // an Invalid snapshot takes no part in origin writes
    await expectContent(image, model, 'origin')
  })
})

describe('§13 bullets: an Invalid snapshot does not hurt the origin or the other snapshots', () => {
  test('the other snapshot keeps its exact content through more origin writes', async () => {
    const { origin, image, model } = await makeOrigin()
    const small = await origin.createSnapshot(persistentCow(1), { chunkSize: CHUNK })
    const bigCow = persistentCow(30)
    const big = await origin.createSnapshot(bigCow, { chunkSize: CHUNK })
    const bigModel = model.slice()
    await originWrite(origin, model, 0, pattern(0, CHUNK, 2))
    await originWrite(origin, model, 4 * CHUNK, pattern(4 * CHUNK, 2 * CHUNK, 2)) // small: no room → Invalid
    expect(small.status().state).toBe('invalid')
    expect(big.status().state).toBe('active')
    await originWrite(origin, model, 0, pattern(0, CHUNK, 3))
    await originWrite(origin, model, 5 * CHUNK + 512, pattern(5 * CHUNK + 512, 512, 3))
    await originWrite(origin, model, 9 * CHUNK, pattern(9 * CHUNK, 3 * CHUNK, 3))
    await originWrite(big, bigModel, 20 * CHUNK + 1024, pattern(20 * CHUNK + 1024, 2048, 6))
    await expectContent(image, model, 'origin')
    await expectContent(big, bigModel, 'the valid snapshot')
    await expectSnapshotInvalid(small)
    expect((await readCowStore(bigCow)).valid).toBe(true)
  })

  test('a snapshot that became Invalid never delays origin writes again (its COW is never touched)', async () => {
    const { origin, image, model } = await makeOrigin()
    const smallCow = new ControlledDevice(persistentCow(30), 'small-cow') // room to spare: only a failure invalidates it
    smallCow.passThrough = () => true
    const small = await origin.createSnapshot(smallCow, { chunkSize: CHUNK })
    const big = await origin.createSnapshot(persistentCow(30), { chunkSize: CHUNK })
    const bigModel = model.slice()
    await originWrite(origin, model, 0, pattern(0, CHUNK, 2))
    smallCow.passThrough = (op, offset) => !(op === 'write' && offset >= 2 * CHUNK) // data writes wait
    const write = originWrite(origin, model, 6 * CHUNK, pattern(6 * CHUNK, CHUNK, 2))
    await settle()
    expect(smallCow.describe()).toBe(`write@${3 * CHUNK}+${CHUNK}`) // the copy of chunk 6
    smallCow.parked[0]!.fail() // row 13: copy failed → Invalid
    await write
    expect(small.status().state).toBe('invalid')
    // From now on every request to the small COW would wait forever.
    smallCow.passThrough = () => false
    const before = smallCow.submitted.length
    for (const chunk of [1, 2, 6, 11, 17]) await originWrite(origin, model, chunk * CHUNK, pattern(chunk * CHUNK, CHUNK, 7))
    await originWrite(origin, model, 0, pattern(0, CHUNK, 7)) // a chunk it had remapped
    expect(smallCow.submitted.slice(before)).toEqual([])
    await expectContent(image, model, 'origin')
    await expectContent(big, bigModel, 'the valid snapshot')
  })
})

describe('§13: becoming Invalid or Overflow is announced', () => {
  test('a change event is emitted (journal command "invalidate", then "overflow" on a PO store)', async () => {
    const origin = await openOrigin(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), { journal: {} })
    const seen: Array<Record<string, unknown>> = []
    origin.events$.subscribe((entry) => { if (entry.type === 'command') seen.push(entry) })
    const invalid = await origin.createSnapshot(persistentCow(1), { chunkSize: CHUNK })
    const overflow = await origin.createSnapshot(new MemoryDevice(5 * 2 * CHUNK), { chunkSize: 2 * CHUNK, overflow: true }) // 3 data chunks
    await overflow.write(0, new Uint8Array(2 * CHUNK)) // overflow's chunk 0 → its COW chunk 2
    await origin.write(8 * CHUNK, new Uint8Array(CHUNK)) // both copy; overflow's COW chunk 3, invalid's only one
    await origin.write(16 * CHUNK, new Uint8Array(CHUNK)) // invalid: no room (row 2); overflow's COW chunk 4
    await expectRejects(overflow.write(12 * 2 * CHUNK, new Uint8Array(512)), 'SNAPCOW_OVERFLOW') // row 5, PO
    const commands = (id: string) => seen.filter((e) => e.snapshot === id).map((e) => e.command)
    expect(invalid.status().state).toBe('invalid')
    expect(overflow.status().state).toBe('overflow')
    expect(commands(invalid.id).filter((c) => c === 'invalidate' || c === 'overflow')).toEqual(['invalidate'])
    expect(commands(overflow.id).filter((c) => c === 'invalidate' || c === 'overflow')).toEqual(['overflow'])
  })
})

describe('§14 status precedence', () => {
  test('Invalid wins over Overflow', async () => {
    const { origin } = await makeOrigin()
    const snapshot = await origin.createSnapshot(persistentCow(1), { chunkSize: CHUNK, overflow: true })
    await snapshot.write(0, new Uint8Array(CHUNK).fill(1))
    await expectRejects(snapshot.write(CHUNK, new Uint8Array(512)), 'SNAPCOW_OVERFLOW')
    expect(snapshot.status().state).toBe('overflow')
    await origin.write(8 * CHUNK, new Uint8Array(512)) // needs room: Invalid while still overflowed
    expect(snapshot.status().state).toBe('invalid')
    expect(snapshot.status().line).toBe(INVALID_LINE)
    await expectRejects(snapshot.write(0, new Uint8Array(512)), 'SNAPCOW_INVALID')
  })
})
