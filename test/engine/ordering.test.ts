// The orderings that protect data (spec §6, §9.5; architecture rule 7), one scenario each,
// stepped by hand with devices whose requests wait for the test. Each scenario is run on the
// real engine (must pass) and on an engine with exactly that order swapped (must fail).
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import type { EngineFaults } from '../../actors/engine.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'

const CHUNK = 4096
const OLD = 0x11
const NEW = 0x22

async function setUp(faults: EngineFaults) {
  const originImage = MemoryDevice.from(new Uint8Array(64 * CHUNK).fill(OLD))
  const originDevice = new ControlledDevice(originImage, 'origin')
  const cowDevice = new ControlledDevice(new MemoryDevice(64 * CHUNK), 'cow')
  originDevice.passThrough = () => true
  cowDevice.passThrough = () => true
  const origin = await openOrigin(originDevice, { faults })
  const snapshot = await origin.createSnapshot(cowDevice, { chunkSize: CHUNK })
  originDevice.passThrough = () => false
  cowDevice.passThrough = () => false
  return { origin, snapshot, originDevice, cowDevice, originImage, cow: cowDevice.inner as MemoryDevice }
}

const chunkOf = (byte: number) => new Uint8Array(CHUNK).fill(byte)

/** Order 1: an origin write reaches the origin only after the copy is on the COW and committed durably. */
async function originWriteWaitsForCommit(faults: EngineFaults): Promise<void> {
  const { origin, snapshot, originDevice, cowDevice } = await setUp(faults)
  const write = origin.write(5 * CHUNK, chunkOf(NEW))
  await settle()
  const steps = ['read', 'write', 'flush', 'write', 'flush'] as const // copy read, copy write, pre-flush, area, FUA
  for (const [i, step] of steps.entries()) {
    if (originDevice.find('write', 5 * CHUNK).length > 0) throw new Error(`origin written before step ${i} (${step}) of copy and commit`)
    ;(i === 0 ? originDevice : cowDevice).releaseOne(step)
    await settle()
  }
  originDevice.releaseOne('write', 5 * CHUNK)
  await write
  const got = new Uint8Array(CHUNK)
  cowDevice.passThrough = () => true
  originDevice.passThrough = () => true
  await snapshot.read(5 * CHUNK, got)
  if (got[0] !== OLD) throw new Error('the snapshot lost the old data')
}

/** Order 2: the pending exception is removed only after conflicting snapshot reads drain. */
async function pendingOutlivesReads(faults: EngineFaults): Promise<void> {
  const { origin, snapshot, originDevice, cowDevice } = await setUp(faults)
  const got = new Uint8Array(CHUNK)
  const read = snapshot.read(7 * CHUNK, got) // goes to the origin (state A), tracked
  await settle()
  const first = origin.write(7 * CHUNK, chunkOf(NEW))
  await settle()
  cowDevice.passThrough = () => true
  originDevice.find('read', 7 * CHUNK)[1]!.release() // the copy's read; the snapshot's (first) stays parked
  await settle()
  await settle()
  // Committed, the snapshot read still in flight: state C. A second origin write must wait.
  if (snapshot.chunkState(7) !== 'CompletedWithReaders') throw new Error(`chunk 7 is ${snapshot.chunkState(7)}, expected CompletedWithReaders`)
  const second = origin.write(7 * CHUNK + 512, new Uint8Array(512).fill(NEW))
  await settle()
  if (originDevice.find('write').length > 0) throw new Error('origin written while a snapshot read of the old data was in flight')
  originDevice.releaseAll() // the snapshot read completes now (it sees what the origin holds now)
  await read
  if (got[0] !== OLD || got[600] !== OLD) throw new Error('the snapshot read returned data written to the origin after the snapshot')
  originDevice.passThrough = () => true
  originDevice.releaseAll()
  await Promise.all([first, second])
}

/** Order 3: the completed exception is inserted before waiting for reads, so new reads go to the COW. */
async function readsCannotStarveCompletion(faults: EngineFaults): Promise<void> {
  const { origin, snapshot, originDevice, cowDevice } = await setUp(faults)
  cowDevice.passThrough = () => true
  const reads: Array<Promise<void>> = [snapshot.read(9 * CHUNK, new Uint8Array(CHUNK))]
  await settle()
  let written = false
  const write = origin.write(9 * CHUNK, chunkOf(NEW)).then(() => { written = true })
  await settle()
  originDevice.find('read', 9 * CHUNK)[1]!.release() // the copy's read; the snapshot's (first) stays parked
  await settle()
  await settle()
  // Keep reading the snapshot while the write waits; release the older origin reads as we go.
  for (let round = 0; round < 4 && !written; round++) {
    const older = originDevice.find('read', 9 * CHUNK)
    reads.push(snapshot.read(9 * CHUNK, new Uint8Array(CHUNK))) // a new reader arrives before the old ones finish
    await settle()
    for (const parked of older) parked.release()
    if (originDevice.find('write', 9 * CHUNK).length > 0) originDevice.releaseOne('write', 9 * CHUNK)
    await settle()
  }
  if (!written) throw new Error('the origin write starved behind a stream of snapshot reads')
  originDevice.passThrough = () => true
  originDevice.releaseAll()
  await Promise.all([...reads, write])
}

/** Order 4: commits reach the store in allocation order even when copies finish out of order. */
async function commitsInAllocationOrder(faults: EngineFaults): Promise<void> {
  const { origin, snapshot, originDevice, cowDevice, cow } = await setUp(faults)
  originDevice.passThrough = (op) => op === 'read'
  const a = origin.write(20 * CHUNK, chunkOf(NEW)) // allocated COW chunk 2
  const b = origin.write(30 * CHUNK, chunkOf(NEW)) // allocated COW chunk 3
  await settle()
  cowDevice.releaseOne('write', 3 * CHUNK) // b's copy finishes first
  await settle()
  if (cowDevice.find('write', 1 * CHUNK).length > 0 || cowDevice.find('flush').length > 0) {
    throw new Error('b was committed before a, whose copy is still in flight')
  }
  cowDevice.releaseOne('write', 2 * CHUNK)
  cowDevice.passThrough = () => true
  originDevice.passThrough = () => true
  cowDevice.releaseAll()
  await settle()
  originDevice.releaseAll()
  await Promise.all([a, b])
  if (snapshot.status().state !== 'active') throw new Error(`snapshot is ${snapshot.status().state}`)
  const table = (await readCowStore(cow)).exceptions
  if (JSON.stringify(table) !== JSON.stringify([[20, 2], [30, 3]])) throw new Error(`table is ${JSON.stringify(table)}`)
}

const scenarios: Array<[string, (f: EngineFaults) => Promise<void>, EngineFaults]> = [
  ['origin data is written only after the COW copy is committed', originWriteWaitsForCommit, { originWriteBeforeCommit: true }],
  ['the pending exception is removed only after conflicting reads drain', pendingOutlivesReads, { removePendingBeforeDrain: true }],
  ['the completed exception is inserted before reads drain (reads cannot starve completion)', readsCannotStarveCompletion, { insertAfterDrain: true }],
  ['commits reach the store in allocation order', commitsInAllocationOrder, { commitOutOfOrder: true }],
]

describe.each(scenarios)('%s', (_name, scenario, broken) => {
  test('holds in snapcow', async () => {
    await scenario({})
  })
  test(`fails with that order swapped (${Object.keys(broken)[0]})`, async () => {
    await expect(Promise.race([scenario(broken), new Promise((_, reject) => setTimeout(() => reject(new Error('hung')), 2000))]))
      .rejects.toThrow()
  })
})
