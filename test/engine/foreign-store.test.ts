// test/engine/foreign-store.test.ts: the COW format names no origin, so loadSnapshot checks what
// it can: no record may point past this origin's last chunk (a partial last chunk counts), and a
// chunkSize option must match the header. Refusals write nothing. readCowStore checks the origin
// bound only when given originSize.
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { CowFormatError } from '../../io/errors.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { RecordingDevice } from '../support/recording-device.js'

const CHUNK = 4096

/** A COW made on an origin of `originBytes`, holding exceptions for the given origin chunks. */
async function cowFor(originBytes: number, chunks: number[], chunkSize = CHUNK): Promise<MemoryDevice> {
  const origin = await openOrigin(new MemoryDevice(originBytes))
  const cow = new MemoryDevice(64 * CHUNK)
  await origin.createSnapshot(cow, { chunkSize })
  for (const chunk of chunks) await origin.write(chunk * chunkSize, new Uint8Array(512).fill(1))
  await origin.close()
  return cow
}

async function formatError(p: Promise<unknown>): Promise<CowFormatError> {
  const error = await p.then(() => undefined, (e: unknown) => e)
  expect(error, 'expected a CowFormatError').toBeInstanceOf(CowFormatError)
  return error as CowFormatError
}

describe('loadSnapshot of a store made for another origin', () => {
  test('a record past the origin\'s last chunk is SNAPCOW_CORRUPT_TABLE naming area, slot, old chunk and the chunk count', async () => {
    const cow = new RecordingDevice(await cowFor(64 * CHUNK, [3, 40, 7]))
    const originDevice = new RecordingDevice(new MemoryDevice(32 * CHUNK))
    const origin = await openOrigin(originDevice)
    const error = await formatError(origin.loadSnapshot(cow))
    expect(error).toMatchObject({ code: 'SNAPCOW_CORRUPT_TABLE', field: 'old_chunk', value: 40, area: 0, slot: 1 })
    expect(error.message).toMatch(/record 1 of metadata area 0/)
    expect(error.message).toMatch(/\b40\b/)
    expect(error.message).toMatch(/32 chunks/)
    expect(cow.writes()).toEqual([])
    expect(originDevice.ops).toEqual([])
    expect(origin.snapshots).toEqual([])
    await origin.close()
  })

  test('the same store loads on an origin as big as its own', async () => {
    const origin = await openOrigin(new MemoryDevice(64 * CHUNK))
    const snapshot = await origin.loadSnapshot(await cowFor(64 * CHUNK, [3, 40, 63]))
    expect(snapshot.chunkState(63)).toBe('Completed')
    await origin.close()
  })

  test('a partial last chunk counts: chunk 32 fits an origin of 32 chunks and 512 bytes, not one of 32 chunks', async () => {
    const originBytes = 32 * CHUNK + 512
    const cow = await cowFor(originBytes, [32])
    const fits = await openOrigin(new MemoryDevice(originBytes))
    const snapshot = await fits.loadSnapshot(cow)
    expect(snapshot.chunkState(32)).toBe('Completed')
    await fits.close()
    const tooSmall = await openOrigin(new MemoryDevice(32 * CHUNK))
    const error = await formatError(tooSmall.loadSnapshot(cow))
    expect(error).toMatchObject({ code: 'SNAPCOW_CORRUPT_TABLE', field: 'old_chunk', value: 32 })
    expect(error.message).toMatch(/32 chunks/)
    await tooSmall.close()
  })
})

describe('loadSnapshot chunkSize', () => {
  test('a chunkSize other than the header\'s is SNAPCOW_CHUNK_SIZE_MISMATCH naming both, nothing written', async () => {
    const cow = new RecordingDevice(await cowFor(16 * CHUNK, [1]))
    const origin = await openOrigin(new MemoryDevice(16 * CHUNK))
    const error = await formatError(origin.loadSnapshot(cow, { chunkSize: 8192 }))
    expect(error).toMatchObject({ code: 'SNAPCOW_CHUNK_SIZE_MISMATCH', field: 'chunk_size', value: 8 })
    expect(error.message).toMatch(/\b4096 bytes/)
    expect(error.message).toMatch(/\b8192 bytes/)
    expect(cow.writes()).toEqual([])
    expect(origin.snapshots).toEqual([])
    const snapshot = await origin.loadSnapshot(cow, { chunkSize: CHUNK }) // the matching one loads
    expect(snapshot.chunkSize).toBe(CHUNK)
    await origin.close()
  })

  test.each([[1000, RangeError], [3072, RangeError], [0, RangeError], ['big', TypeError]] as const)('an illegal chunkSize (%s) is a %o before any I/O', async (chunkSize, kind) => {
    const cow = new RecordingDevice(await cowFor(16 * CHUNK, []))
    const origin = await openOrigin(new MemoryDevice(16 * CHUNK))
    await expect(origin.loadSnapshot(cow, { chunkSize: chunkSize as number })).rejects.toThrow(kind)
    expect(cow.ops).toEqual([])
    await origin.close()
  })
})

describe('readCowStore originSize', () => {
  test('without it, no origin bound; with it, the same refusal as loadSnapshot', async () => {
    const cow = await cowFor(64 * CHUNK, [50])
    expect((await readCowStore(cow)).exceptions).toEqual([[50, 2]])
    expect((await readCowStore(cow, { originSize: 51 * CHUNK })).exceptions).toEqual([[50, 2]])
    const error = await formatError(readCowStore(cow, { originSize: 50 * CHUNK }))
    expect(error).toMatchObject({ code: 'SNAPCOW_CORRUPT_TABLE', field: 'old_chunk', value: 50, area: 0, slot: 0 })
    await expect(readCowStore(cow, { originSize: -1 })).rejects.toThrow(RangeError)
  })
})
