// test/engine/device-claims.test.ts: a device object serves one origin or one snapshot at a time
// in this process (actors/device-claims.ts), as the kernel claims a device exclusively: openOrigin,
// createSnapshot and loadSnapshot refuse a device in use with SNAPCOW_BUSY, writing nothing, and
// closing the origin, dropping a snapshot or merging it away releases the device.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { SnapcowError } from '../../io/errors.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { RecordingDevice } from '../support/recording-device.js'

const CHUNK = 4096
const ORIGIN_BYTES = 16 * CHUNK
const COW_BYTES = 16 * CHUNK

async function busy(p: Promise<unknown>): Promise<SnapcowError> {
  const error = await p.then(() => undefined, (e: unknown) => e)
  expect(error, 'expected SNAPCOW_BUSY').toBeInstanceOf(SnapcowError)
  expect((error as SnapcowError).code).toBe('SNAPCOW_BUSY')
  return error as SnapcowError
}

describe('openOrigin', () => {
  test('a device already open as an origin is refused until that origin is closed', async () => {
    const device = new MemoryDevice(ORIGIN_BYTES)
    const first = await openOrigin(device)
    const error = await busy(openOrigin(device))
    expect(error.message).toMatch(/origin device of another open origin/)
    await first.close()
    const second = await openOrigin(device)
    await second.close()
  })

  test('a device that is the COW of a live snapshot is refused until the snapshot is dropped', async () => {
    const origin = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    const cow = new RecordingDevice(new MemoryDevice(COW_BYTES))
    const snapshot = await origin.createSnapshot(cow, { chunkSize: CHUNK })
    const writes = cow.writes().length
    const error = await busy(openOrigin(cow))
    expect(error.message).toMatch(/COW device of a snapshot/)
    expect(cow.writes()).toHaveLength(writes)
    await snapshot.drop()
    await (await openOrigin(cow)).close()
    await origin.close()
  })

  test('a failed open (journal file cannot be made) releases the device', async () => {
    const device = new MemoryDevice(ORIGIN_BYTES)
    const dir = await mkdtemp(join(tmpdir(), 'snapcow-claims-'))
    try {
      await expect(openOrigin(device, { journal: { path: join(dir, 'missing', 'run.jsonl') } })).rejects.toThrow()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
    await (await openOrigin(device)).close()
  })
})

describe('createSnapshot and loadSnapshot', () => {
  test.each(['create', 'load'] as const)('%s: the device of another open origin is refused, nothing written', async (op) => {
    const a = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    const originDeviceOfB = new RecordingDevice(new MemoryDevice(ORIGIN_BYTES))
    const b = await openOrigin(originDeviceOfB)
    const error = await busy(op === 'create' ? a.createSnapshot(originDeviceOfB, { chunkSize: CHUNK }) : a.loadSnapshot(originDeviceOfB))
    expect(error.message).toMatch(/origin device of another open origin/)
    expect(originDeviceOfB.ops).toEqual([])
    expect(a.snapshots).toEqual([])
    await Promise.all([a.close(), b.close()])
  })

  test.each(['create', 'load'] as const)('%s: the COW of another origin\'s live snapshot is refused until that snapshot is gone', async (op) => {
    const a = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    const b = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    const cow = new RecordingDevice(new MemoryDevice(COW_BYTES))
    const snapshot = await a.createSnapshot(cow, { chunkSize: CHUNK })
    await a.write(0, new Uint8Array(CHUNK).fill(3)) // an exception on the COW
    const ops = cow.ops.length
    const again = () => (op === 'create' ? b.createSnapshot(cow, { chunkSize: CHUNK }) : b.loadSnapshot(cow))
    await busy(again())
    expect(cow.ops).toHaveLength(ops) // not even read
    await snapshot.drop()
    if (op === 'load') {
      const loaded = await again() // the store is the same; the other origin may take it now
      expect(loaded.chunkState(0)).toBe('Completed')
    } else {
      await expect(again()).rejects.toMatchObject({ code: 'SNAPCOW_STORE_EXISTS' }) // free, and still never overwritten
    }
    await Promise.all([a.close(), b.close()])
  })

  test('a COW merged away is free again', async () => {
    const a = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    const cow = new MemoryDevice(COW_BYTES)
    const snapshot = await a.createSnapshot(cow, { chunkSize: CHUNK })
    await a.write(0, new Uint8Array(CHUNK).fill(5))
    const b = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    await busy(b.loadSnapshot(cow))
    await snapshot.merge()
    const loaded = await b.loadSnapshot(cow) // an empty table after the merge
    expect(loaded.status().line).toBe(`0 ${ORIGIN_BYTES / 512} snapshot 16/${COW_BYTES / 512} 16`) // header and area 0 only
    await Promise.all([a.close(), b.close()])
  })

  test('closing an origin frees its origin device and the COWs of its snapshots', async () => {
    const device = new MemoryDevice(ORIGIN_BYTES)
    const a = await openOrigin(device)
    const cow = new MemoryDevice(COW_BYTES)
    await a.createSnapshot(cow, { chunkSize: CHUNK })
    const b = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    await busy(b.loadSnapshot(cow))
    await a.close()
    await b.loadSnapshot(cow)
    await (await openOrigin(device)).close()
    await b.close()
  })

  test('a snapshot that could not be made leaves its COW free', async () => {
    const a = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    const cow = new MemoryDevice(COW_BYTES) // no store: loadSnapshot fails with SNAPCOW_NO_STORE
    await expect(a.loadSnapshot(cow)).rejects.toMatchObject({ code: 'SNAPCOW_NO_STORE' })
    const b = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    await b.createSnapshot(cow, { chunkSize: CHUNK })
    await Promise.all([a.close(), b.close()])
  })

  test('two snapshots racing for one COW on one origin: one wins, the other is SNAPCOW_BUSY', async () => {
    const a = await openOrigin(new MemoryDevice(ORIGIN_BYTES))
    const cow = new MemoryDevice(COW_BYTES)
    const results = await Promise.allSettled([a.createSnapshot(cow, { chunkSize: CHUNK }), a.createSnapshot(cow, { chunkSize: CHUNK })])
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected'])
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
    expect((lost.reason as SnapcowError).code).toBe('SNAPCOW_BUSY')
    expect(a.snapshots).toHaveLength(1)
    await a.close()
  })
})
