// origin.events$ (issue 9): the `open` entry is made inside openOrigin, before anyone can
// subscribe, so events$ gives a new subscriber the journal so far and then the live entries:
// every entry exactly once, in seq order, with no gap even when entries are made while the
// subscriber is catching up.
import { take } from 'rxjs'
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { JournalEntry } from '../../actors/journal/journal.js'

const seqs = (entries: readonly JournalEntry[]) => entries.map((e) => e.seq)
const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

async function originWithHistory() {
  const origin = await openOrigin(new MemoryDevice(64 * 1024), { journal: {} })
  const snap = await origin.createSnapshot(new MemoryDevice(256 * 1024), { chunkSize: 4096 })
  await origin.write(0, new Uint8Array(4096).fill(1))
  await snap.read(0, new Uint8Array(512))
  return { origin, snap }
}

describe('origin.events$', () => {
  test('a late subscriber gets `open` first, every earlier entry once, then the live ones', async () => {
    const { origin, snap } = await originWithHistory()
    const before = origin.journal.entries().length
    expect(before).toBeGreaterThan(10)
    const seen: JournalEntry[] = []
    const subscription = origin.events$.subscribe((e) => seen.push(e))
    expect(seen[0]).toMatchObject({ seq: 1, type: 'open', size: 64 * 1024 })
    expect(seqs(seen)).toEqual(oneTo(before)) // the history, synchronously on subscribe
    await Promise.all([origin.write(8192, new Uint8Array(512).fill(2)), snap.write(16384, new Uint8Array(512).fill(3))])
    const all = [...origin.journal.entries()]
    expect(all.length).toBeGreaterThan(before)
    expect(seen).toEqual(all) // the same objects, each once, in seq order
    subscription.unsubscribe()
    await origin.write(0, new Uint8Array(512))
    expect(seen).toHaveLength(all.length) // nothing after unsubscribing
    expect(origin.journal.entries().length).toBeGreaterThan(all.length)
  })

  test('entries made while a subscriber catches up come once, in order (no gap, no duplicate)', async () => {
    const { origin } = await originWithHistory()
    const before = origin.journal.entries().length
    const early: JournalEntry[] = []
    origin.events$.subscribe((e) => early.push(e)) // a live subscriber already there
    const seen: JournalEntry[] = []
    let made = 0
    origin.events$.subscribe((e) => {
      seen.push(e)
      // Its reaction to the replayed entries makes new ones, synchronously, mid catch-up.
      if (e.seq <= 3) { made++; origin.journal.record({ type: 'test-marker', after: e.seq }) }
    })
    expect(made).toBe(3)
    expect(seqs(seen)).toEqual(oneTo(before + 3))
    expect(seen.slice(before).map((e) => e.after)).toEqual([1, 2, 3])
    expect(seqs(early)).toEqual(oneTo(before + 3)) // the other subscriber saw them live, once
  })

  test('a subscriber that stops partway through the history gets no more', async () => {
    const { origin } = await originWithHistory()
    const seen: JournalEntry[] = []
    let completed = false
    origin.events$.pipe(take(3)).subscribe({ next: (e) => seen.push(e), complete: () => { completed = true } })
    await origin.write(4096, new Uint8Array(512))
    expect(seqs(seen)).toEqual([1, 2, 3])
    expect(completed).toBe(true)
  })

  test('with the journal off it is silent', async () => {
    const origin = await openOrigin(new MemoryDevice(64 * 1024))
    const seen: JournalEntry[] = []
    origin.events$.subscribe((e) => seen.push(e))
    await origin.write(0, new Uint8Array(512))
    expect(seen).toEqual([])
  })
})
