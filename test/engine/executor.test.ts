// The executor option: chunk machines run from the compiled table (default) or as XState
// actors, and the engine does the same either way: the same journal, entry for entry.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { JournalEntry } from '../../actors/journal/journal.js'
import { delayedDevice, seededDelays } from '../support/delayed-device.js'
import { pattern } from '../support/bytes.js'

const CHUNK = 4096

/** A fixed, racy workload (two snapshots, writes racing reads, a COW that fills) on seeded devices. */
async function journalOf(executor: 'compiled' | 'xstate'): Promise<readonly JournalEntry[]> {
  const delays = seededDelays(7, 3)
  const slow = (dev: MemoryDevice) => delayedDevice(dev, () => delays())
  const origin = await openOrigin(slow(MemoryDevice.from(pattern(0, 64 * CHUNK, 1))), { executor, journal: {} })
  const a = await origin.createSnapshot(slow(new MemoryDevice(12 * CHUNK)), { chunkSize: CHUNK })
  const b = await origin.createSnapshot(slow(new MemoryDevice(64 * CHUNK)), { chunkSize: 2 * CHUNK, persistent: false })
  const settled = (ps: Array<Promise<unknown>>) => Promise.allSettled(ps)
  await settled([
    a.read(3 * CHUNK, new Uint8Array(CHUNK)), origin.write(3 * CHUNK, pattern(3 * CHUNK, 512, 2)),
    b.write(10 * CHUNK, pattern(10 * CHUNK, 2 * CHUNK, 3)), origin.write(0, pattern(0, 20 * CHUNK, 4)),
    a.write(30 * CHUNK + 512, pattern(0, 1024, 5)), b.read(0, new Uint8Array(8 * CHUNK)),
  ])
  await origin.close()
  return origin.journal.entries()
}

test('compiled and XState executors make the same journal, transitions and commands included', async () => {
  const compiled = await journalOf('compiled')
  const xstate = await journalOf('xstate')
  expect(compiled.filter((e) => e.type === 'chunk').length).toBeGreaterThan(20)
  expect(compiled.some((e) => e.type === 'command' && e.command === 'invalidate')).toBe(true) // the small COW filled
  expect(compiled).toEqual(xstate)
})

test('an unknown executor is a TypeError naming it', async () => {
  await expect(openOrigin(new MemoryDevice(CHUNK), { executor: 'fast' as never })).rejects.toThrow(/executor must be 'compiled' or 'xstate', got fast/)
})
