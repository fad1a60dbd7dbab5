// Recorded journals as regression tests (architecture: "replay tests from recorded journals
// checked into test/"). Each test/journals/<name>.jsonl was recorded by test/journals/record.ts;
// its <name>.expect.json says how to rebuild the initial images and what the final ones hash
// to. Replaying the file onto rebuilt images must make exactly the recorded entries (so the
// engine still takes every decision it took then) and end with the recorded images and
// statuses. A deliberate change to the engine's journal means re-running record.ts.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import type { JournalEntry } from '../../actors/journal/journal.js'
import { readJournal } from '../../actors/journal/read-journal.js'
import { replay } from '../../actors/journal/replay.js'
import { pattern } from '../support/bytes.js'
import type { Expectation } from '../journals/record.js'

const fixture = (file: string) => fileURLToPath(new URL(`../journals/${file}`, import.meta.url))
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

async function readAll(path: string): Promise<JournalEntry[]> {
  const out: JournalEntry[] = []
  for await (const entry of readJournal(path)) out.push(entry)
  return out
}

/** Replays fixture `name` onto rebuilt initial images; returns what the test checks. */
async function replayFixture(name: string) {
  const expectation = JSON.parse(readFileSync(fixture(`${name}.expect.json`), 'utf8')) as Expectation
  const recorded = await readAll(fixture(`${name}.jsonl`))
  const origin = MemoryDevice.from(pattern(0, expectation.origin.size, expectation.origin.patternSeed))
  // Every COW starts zeroed, at the size its `snapshot` entry recorded, indexed by `cow`.
  const cows: MemoryDevice[] = []
  for (const e of recorded) if (e.type === 'snapshot') cows[e.cow as number] = new MemoryDevice(e.cowSize as number)
  const result = await replay(readJournal(fixture(`${name}.jsonl`)), { origin, cows })
  return { expectation, recorded, origin, cows, ...result }
}

const count = (entries: readonly JournalEntry[], match: Record<string, unknown>) =>
  entries.filter((e) => Object.entries(match).every(([k, v]) => e[k] === v)).length

describe.each(['racing', 'invalidation', 'merge'])('recorded journal %s', (name) => {
  test('replays to the recorded entries, final images and statuses', async () => {
    const { expectation, recorded, origin, cows, entries, statuses } = await replayFixture(name)
    expect(recorded[0]).toMatchObject({ type: 'open', size: expectation.origin.size, payloads: true })
    expect(recorded).toHaveLength(expectation.entries)
    expect(entries).toEqual(recorded)
    expect(sha256(origin.snapshotBytes())).toBe(expectation.sha256.origin)
    expect(cows.map((c) => sha256(c.snapshotBytes()))).toEqual(expectation.sha256.cows)
    expect(statuses.map(({ state, line }) => ({ state, line }))).toEqual(expectation.statuses)
  })
})

// What each recording was made to cover is still in it (a re-recording must keep it).
describe('the recordings cover what they are named for', () => {
  test('racing: three snapshots, a snapshot made mid-run, concurrent I/O, a read held across a commit', async () => {
    const e = await readAll(fixture('racing.jsonl'))
    expect(count(e, { type: 'snapshot', op: 'create' })).toBe(3)
    expect(new Set(e.filter((x) => x.type === 'snapshot').map((x) => x.chunkSize)).size).toBe(3)
    const firstSnapshotBio = e.findIndex((x) => x.type === 'bio' && x.volume === 'snap-3')
    expect(e.findIndex((x) => x.type === 'snapshot' && x.cow === 2)).toBeGreaterThan(e.findIndex((x) => x.type === 'bio'))
    expect(firstSnapshotBio).toBeGreaterThan(0)
    expect(count(e, { type: 'chunk', to: 'CompletedWithReaders' })).toBeGreaterThanOrEqual(1)
    expect(count(e, { type: 'read-drained' })).toBeGreaterThanOrEqual(1)
    // Concurrency: some request was issued while an earlier one had not finished.
    const open = new Set<unknown>()
    let overlapped = 0
    for (const x of e) {
      if (x.type === 'bio') { if (open.size > 0) overlapped++; open.add(x.bio) }
      if (x.type === 'done') open.delete(x.bio)
    }
    expect(overlapped).toBeGreaterThan(10)
  })

  test('invalidation: no room → invalidate, the snapshot\'s I/O then fails, the other stays valid', async () => {
    const e = await readAll(fixture('invalidation.jsonl'))
    expect(count(e, { type: 'command', snapshot: 'snap-1', command: 'invalidate' })).toBeGreaterThanOrEqual(1)
    expect(count(e, { type: 'command', snapshot: 'snap-2', command: 'invalidate' })).toBe(0)
    expect(count(e, { type: 'done', ok: false, error: 'SNAPCOW_INVALID' })).toBeGreaterThanOrEqual(1)
    const { statuses } = JSON.parse(readFileSync(fixture('invalidation.expect.json'), 'utf8')) as Expectation
    expect(statuses.map((s) => s.state)).toEqual(['invalid', 'active'])
  })

  test('merge: a merge that succeeds with origin I/O and another snapshot going on', async () => {
    const e = await readAll(fixture('merge.jsonl'))
    const merge = e.find((x) => x.type === 'merge')!
    const done = e.find((x) => x.type === 'done' && x.bio === merge.bio)!
    expect(done.ok).toBe(true)
    const during = e.filter((x) => x.seq > merge.seq && x.seq < done.seq)
    expect(count(during, { type: 'bio', volume: 'origin', op: 'write' })).toBeGreaterThanOrEqual(1)
    expect(count(during, { type: 'bio', volume: 'snap-2' })).toBeGreaterThanOrEqual(1)
    const { statuses } = JSON.parse(readFileSync(fixture('merge.expect.json'), 'utf8')) as Expectation
    expect(statuses.map((s) => s.state)).toEqual(['merged', 'active'])
  })
})
