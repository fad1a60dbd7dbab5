// Rows of spec §4 and rules of §5 not covered by ordering.test.ts or chunk.model.test.ts,
// checked directly through the object API with devices that record or hold every request.
import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'
import { RecordingDevice } from '../support/recording-device.js'
import { firstDifference, pattern, readAt } from '../support/bytes.js'

const CHUNK = 4096
const ORIGIN_BYTES = 64 * CHUNK
const ORIGIN_SECTORS = ORIGIN_BYTES / 512

async function setUp(chunkSizes: number[] = [CHUNK]) {
  const originImage = MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1))
  const originDevice = new RecordingDevice(originImage)
  const origin = await openOrigin(originDevice)
  const cows: RecordingDevice[] = []
  const snapshots = []
  for (const chunkSize of chunkSizes) {
    const cow = new RecordingDevice(new MemoryDevice(2 * ORIGIN_BYTES))
    cows.push(cow)
    snapshots.push(await origin.createSnapshot(cow, { chunkSize }))
  }
  originDevice.ops.length = 0
  for (const cow of cows) cow.ops.length = 0
  return { origin, originDevice, originImage, cows, snapshots, model: pattern(0, ORIGIN_BYTES, 1) }
}

async function expectContent(device: BlockDevice, model: Uint8Array, what: string): Promise<void> {
  expect(firstDifference(await readAt(device, 0, model.length), model), what).toBeUndefined()
}

const reads = (device: RecordingDevice) =>
  device.ops.flatMap((o) => (o.op === 'read' ? [`read@${o.offset}+${o.length}`] : []))
const oldChunks = async (cow: RecordingDevice) => (await readCowStore(cow.inner)).exceptions.map(([old]) => old).sort((a, b) => a - b)

describe('§4 row 3: a snapshot write covering a whole chunk in None', () => {
  test('is written to the new COW chunk instead of a copy: the origin chunk is never read', async () => {
    const { originDevice, cows: [cow], snapshots: [snapshot] } = await setUp()
    const data = pattern(5 * CHUNK, CHUNK, 4)
    await snapshot!.write(5 * CHUNK, data)
    expect(reads(originDevice)).toEqual([])
    expect(cow!.trace()).toEqual([`write@${2 * CHUNK}+${CHUNK}`, 'flush', `write@${CHUNK}+${CHUNK}`, 'flush'])
    expect(firstDifference(await readAt(cow!.inner, 2 * CHUNK, CHUNK), data)).toBeUndefined()
    expect(firstDifference(await readAt(snapshot!, 5 * CHUNK, CHUNK), data)).toBeUndefined()
    expect(await readCowStore(cow!.inner)).toMatchObject({ exceptions: [[5, 2]] })
  })

  test('is acknowledged only after its exception is committed (pre-flush, area write, flush)', async () => {
    const originDevice = new ControlledDevice(MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1)), 'origin')
    const cow = new ControlledDevice(new MemoryDevice(2 * ORIGIN_BYTES), 'cow')
    originDevice.passThrough = () => true
    cow.passThrough = () => true
    const origin = await openOrigin(originDevice)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.passThrough = () => false
    const before = originDevice.submitted.length
    let acknowledged = false
    const write = snapshot.write(5 * CHUNK, pattern(5 * CHUNK, CHUNK, 4)).then(() => { acknowledged = true })
    // The full-chunk write, the pre-flush, the area write, the FUA flush: one at a time.
    for (const [op, offset] of [['write', 2 * CHUNK], ['flush', undefined], ['write', CHUNK], ['flush', undefined]] as const) {
      await settle()
      expect(acknowledged, `acknowledged before ${op}${offset === undefined ? '' : `@${offset}`} finished`).toBe(false)
      expect(snapshot.chunkState(5)).toBe('Pending')
      cow.releaseOne(op, offset)
    }
    await settle()
    await write
    expect(snapshot.chunkState(5)).toBe('Completed')
    expect(originDevice.submitted.slice(before)).toEqual([]) // nothing read from (or written to) the origin
  })
})

describe('§4 row 4: a partial snapshot write in None', () => {
  test('copies the chunk first, then the write lands after the commit; the rest keeps the origin\'s old data', async () => {
    const { originDevice, originImage, cows: [cow], snapshots: [snapshot], model } = await setUp()
    const data = pattern(5 * CHUNK + 1024, 512, 4)
    await snapshot!.write(5 * CHUNK + 1024, data)
    expect(reads(originDevice)).toEqual([`read@${5 * CHUNK}+${CHUNK}`]) // the copy
    expect(originDevice.writes()).toEqual([])
    expect(cow!.trace()).toEqual([
      `write@${2 * CHUNK}+${CHUNK}`, // copy
      'flush', `write@${CHUNK}+${CHUNK}`, 'flush', // commit
      `write@${2 * CHUNK + 1024}+512`, // the held write, released by row 12
    ])
    const expected = model.slice(5 * CHUNK, 6 * CHUNK)
    expected.set(data, 1024)
    expect(firstDifference(await readAt(snapshot!, 5 * CHUNK, CHUNK), expected)).toBeUndefined()
    await expectContent(originImage, model, 'origin (a snapshot write leaves it alone)')
  })
})

describe('§5.6 snapshot I/O is split at the snapshot\'s chunk boundaries', () => {
  test('a snapshot write spanning 3 chunks creates 3 exceptions (copies only for the partial ones)', async () => {
    const { originDevice, cows: [cow], snapshots: [snapshot], model } = await setUp()
    const snapModel = model.slice()
    const offset = 5 * CHUNK + 2048
    const data = pattern(offset, 2 * CHUNK, 4) // chunk 5 from 2048, all of 6, chunk 7 up to 2048
    await snapshot!.write(offset, data)
    snapModel.set(data, offset)
    expect(await oldChunks(cow!)).toEqual([5, 6, 7])
    expect([4, 5, 6, 7, 8].map((c) => snapshot!.chunkState(c))).toEqual(['None', 'Completed', 'Completed', 'Completed', 'None'])
    expect(reads(originDevice).sort()).toEqual([`read@${5 * CHUNK}+${CHUNK}`, `read@${7 * CHUNK}+${CHUNK}`]) // chunk 6: row 3
    await expectContent(snapshot!, snapModel, 'snapshot')
  })

  test('a snapshot read spanning remapped and shared chunks returns each from the right device', async () => {
    const { origin, snapshots: [snapshot], model } = await setUp()
    const snapModel = model.slice()
    await snapshot!.write(6 * CHUNK + 512, pattern(6 * CHUNK + 512, 512, 4))
    snapModel.set(pattern(6 * CHUNK + 512, 512, 4), 6 * CHUNK + 512)
    await origin.write(7 * CHUNK, pattern(7 * CHUNK, CHUNK, 2))
    const got = await readAt(snapshot!, 5 * CHUNK + 512, 3 * CHUNK)
    expect(firstDifference(got, snapModel.subarray(5 * CHUNK + 512, 8 * CHUNK + 512))).toBeUndefined()
  })
})

describe('§5.2 origin writes and several snapshots', () => {
  test('an origin write spanning chunks of snapshots with different chunk sizes copies for each', async () => {
    const { origin, originImage, cows: [small, large], snapshots: [s4k, s16k], model } = await setUp([CHUNK, 4 * CHUNK])
    const snapModel = model.slice()
    const data = pattern(3 * CHUNK, 2 * CHUNK, 2) // 4 KiB chunks 3 and 4; 16 KiB chunks 0 and 1
    await origin.write(3 * CHUNK, data)
    model.set(data, 3 * CHUNK)
    expect(await oldChunks(small!)).toEqual([3, 4])
    expect(await oldChunks(large!)).toEqual([0, 1])
    await expectContent(originImage, model, 'origin')
    await expectContent(s4k!, snapModel, '4 KiB-chunk snapshot')
    await expectContent(s16k!, snapModel, '16 KiB-chunk snapshot')
  })

  test('two snapshots of equal chunk size: one origin write copies to both and reads the origin chunk once', async () => {
    const { origin, originDevice, cows, snapshots, model } = await setUp([CHUNK, CHUNK])
    const snapModel = model.slice()
    await origin.write(5 * CHUNK + 512, pattern(5 * CHUNK + 512, 512, 2))
    expect(reads(originDevice)).toEqual([`read@${5 * CHUNK}+${CHUNK}`])
    for (const cow of cows) expect(await oldChunks(cow)).toEqual([5])
    for (const snapshot of snapshots) await expectContent(snapshot, snapModel, snapshot.id)
  })

  test('snapshots of 4 KiB and 16 KiB chunks: one origin read, of the larger chunk, serves both copies', async () => {
    const { origin, originDevice, cows: [small, large], snapshots, model } = await setUp([CHUNK, 4 * CHUNK])
    const snapModel = model.slice()
    await origin.write(5 * CHUNK, pattern(5 * CHUNK, 512, 2)) // 4 KiB chunk 5 lies in 16 KiB chunk 1
    expect(reads(originDevice)).toEqual([`read@${4 * CHUNK}+${4 * CHUNK}`])
    expect(await oldChunks(small!)).toEqual([5])
    expect(await oldChunks(large!)).toEqual([1])
    for (const snapshot of snapshots) await expectContent(snapshot, snapModel, snapshot.id)
  })

  test('an origin write to a chunk every snapshot has remapped copies nothing more', async () => {
    const { origin, originDevice, cows, model, originImage } = await setUp([CHUNK, 2 * CHUNK])
    await origin.write(4 * CHUNK, new Uint8Array(512)) // both remap (row 1)
    originDevice.ops.length = 0
    for (const cow of cows) cow.ops.length = 0
    const data = pattern(4 * CHUNK, CHUNK, 3)
    await origin.write(4 * CHUNK, data) // row 16: D for both
    model.set(data, 4 * CHUNK)
    expect(originDevice.trace()).toEqual([`write@${4 * CHUNK}+${CHUNK}`])
    expect(reads(originDevice)).toEqual([])
    for (const cow of cows) expect(cow.ops).toEqual([])
    await expectContent(originImage, model, 'origin')
  })
})

describe('§5.5 flush', () => {
  test('origin flush goes to the origin device only; snapshot flush to its COW device only', async () => {
    const { origin, originDevice, cows: [cow], snapshots: [snapshot] } = await setUp()
    await origin.flush()
    expect(originDevice.ops).toEqual([{ op: 'flush' }])
    expect(cow!.ops).toEqual([])
    originDevice.ops.length = 0
    await snapshot!.flush()
    expect(cow!.ops).toEqual([{ op: 'flush' }])
    expect(originDevice.ops).toEqual([])
  })
})

describe('drop()', () => {
  test('detaches: I/O rejects with SNAPCOW_DETACHED, it leaves origin.snapshots, later origin writes no longer copy for it', async () => {
    const { origin, originImage, cows: [cow, otherCow], snapshots: [snapshot, other], model } = await setUp([CHUNK, CHUNK])
    const snapModel = model.slice()
    await origin.write(2 * CHUNK, pattern(2 * CHUNK, CHUNK, 2))
    await snapshot!.write(9 * CHUNK + 512, pattern(9 * CHUNK + 512, 1024, 4))
    snapModel.set(pattern(9 * CHUNK + 512, 1024, 4), 9 * CHUNK + 512)
    const table = (await readCowStore(cow!.inner)).exceptions
    await snapshot!.drop()
    const originAtDrop = originImage.snapshotBytes()

    await expect(snapshot!.read(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'SNAPCOW_DETACHED' })
    await expect(snapshot!.write(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'SNAPCOW_DETACHED' })
    expect(origin.snapshots).toEqual([other])
    cow!.ops.length = 0
    otherCow!.ops.length = 0
    await origin.write(20 * CHUNK, pattern(20 * CHUNK, CHUNK, 3)) // a new chunk for everyone
    expect(cow!.ops).toEqual([])
    expect(otherCow!.writes().length).toBeGreaterThan(0) // the other snapshot still copies

    // The COW keeps a valid store with the same table, and reads as it did, on the origin as it was.
    expect((await readCowStore(cow!.inner)).exceptions).toEqual(table)
    const again = await (await openOrigin(MemoryDevice.from(originAtDrop))).loadSnapshot(cow!.inner)
    expect(again.status().state).toBe('active')
    await expectContent(again, snapModel, 'reloaded snapshot')
  })

  test('waits for exceptions in flight; they are committed to the COW it leaves behind', async () => {
    const originImage = MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1))
    const cow = new ControlledDevice(new MemoryDevice(2 * ORIGIN_BYTES), 'cow')
    cow.passThrough = () => true
    const origin = await openOrigin(originImage)
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    cow.passThrough = () => false
    const write = origin.write(3 * CHUNK, pattern(3 * CHUNK, CHUNK, 2))
    await settle()
    let dropped = false
    const drop = snapshot.drop().then(() => { dropped = true })
    await settle()
    expect(dropped).toBe(false)
    await expect(snapshot.read(0, new Uint8Array(512))).rejects.toMatchObject({ code: 'SNAPCOW_DETACHED' })
    cow.passThrough = () => true
    cow.releaseAll()
    await Promise.all([write, drop])
    expect(origin.snapshots).toEqual([])
    expect((await readCowStore(cow.inner)).exceptions).toEqual([[3, 2]])
  })
})

describe('§10 transient snapshot (persistent: false)', () => {
  test('reads, writes, nothing but data chunks from COW chunk 0 on the COW, status "a/t 0"', async () => {
    const originImage = MemoryDevice.from(pattern(0, ORIGIN_BYTES, 1))
    const origin = await openOrigin(originImage)
    const cow = new RecordingDevice(new MemoryDevice(16 * CHUNK))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK, persistent: false })
    const total = cow.size / 512
    expect(cow.ops).toEqual([]) // no header, no metadata area
    expect(snapshot.status()).toMatchObject({ state: 'active', allocatedSectors: 0, totalSectors: total, metadataSectors: 0 })
    expect(snapshot.status().line).toBe(`0 ${ORIGIN_SECTORS} snapshot 0/${total} 0`)

    const model = pattern(0, ORIGIN_BYTES, 1)
    const snapModel = model.slice()
    await origin.write(3 * CHUNK, pattern(3 * CHUNK, CHUNK, 2)) // copy → COW chunk 0
    model.set(pattern(3 * CHUNK, CHUNK, 2), 3 * CHUNK)
    await snapshot.write(7 * CHUNK + 512, pattern(7 * CHUNK + 512, 512, 4)) // copy → COW chunk 1, then the write
    snapModel.set(pattern(7 * CHUNK + 512, 512, 4), 7 * CHUNK + 512)
    expect(cow.trace()).toEqual([`write@0+${CHUNK}`, `write@${CHUNK}+${CHUNK}`, `write@${CHUNK + 512}+512`])
    expect(snapshot.status().line).toBe(`0 ${ORIGIN_SECTORS} snapshot ${2 * CHUNK / 512}/${total} 0`)
    await expectContent(snapshot, snapModel, 'snapshot')
    await expectContent(originImage, model, 'origin')
  })
})
