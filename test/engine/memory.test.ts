// Architecture rules 3 and 4: 1,000,000 completed exceptions leave no live chunk actor and
// cost at most 32 bytes each of heap. The store is built with snapcow's writer on a sparse
// 4 GiB COW, then loaded under a sparse origin; the heap is measured around the load.
import v8 from 'node:v8'
import vm from 'node:vm'
import { expect, test } from 'vitest'
import { PersistentStore } from '../../io/cow-format/persistent-store.js'
import { asChunkSectors, asOldChunk } from '../../io/units.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { SparseDevice } from '../support/sparse-device.js'

const EXCEPTIONS = 1_000_000
const CHUNK = 4096

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
const heap = () => {
  gc()
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.external // external includes the typed arrays' buffers
}

test(`${EXCEPTIONS} completed exceptions: no live actor, at most 32 bytes each`, async () => {
  const perArea = CHUNK / 16
  const cow = new SparseDevice((EXCEPTIONS + Math.ceil(EXCEPTIONS / perArea) + 4) * CHUNK)
  const store = await PersistentStore.create(cow, asChunkSectors(CHUNK / 512))
  // Origin chunks in a scattered order (a multiplicative permutation), one batch per area.
  const originChunks = 2 * EXCEPTIONS
  for (let i = 0; i < EXCEPTIONS; i += perArea) {
    const batch: Array<Promise<boolean>> = []
    for (let j = i; j < Math.min(EXCEPTIONS, i + perArea); j++) {
      batch.push(store.commit(asOldChunk((j * 2654435761) % originChunks), store.allocate()!, true))
    }
    await Promise.all(batch)
  }
  const origin = await openOrigin(new SparseDevice(originChunks * CHUNK))

  const before = heap()
  const snapshot = await origin.loadSnapshot(cow)
  const after = heap()
  const perException = (after - before) / EXCEPTIONS
  console.log(`memory: ${EXCEPTIONS} completed exceptions cost ${perException.toFixed(1)} bytes each of heap`)

  expect(perException).toBeLessThanOrEqual(32)
  const core = origin.engine.snapshots[0]!
  expect(core.live.size).toBe(0)
  expect(core.pending.size).toBe(0)
  expect(core.completed.size).toBe(EXCEPTIONS)
  expect(snapshot.chunkState((7 * 2654435761) % originChunks)).toBe('Completed')
  expect(snapshot.status().line).toMatch(/^0 16000000 snapshot \d+\/\d+ \d+$/)
}, 120_000)
