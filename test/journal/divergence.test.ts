// The journal's failure modes (api.md "Journal and replay", docs/errors.md): a replay of an
// altered journal stops at the first entry that differs (ReplayDivergenceError, naming the
// seq and both entries); a damaged journal file is refused by readJournal naming the line;
// a journal file that cannot be opened or written is a SNAPCOW_JOURNAL error, never silence.
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { JournalEntry } from '../../actors/journal/journal.js'
import { readJournal } from '../../actors/journal/read-journal.js'
import { replay, ReplayDivergenceError } from '../../actors/journal/replay.js'

const dir = mkdtempSync(join(tmpdir(), 'snapcow-divergence-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const ORIGIN = 64 * 1024
const initial = () => new Uint8Array(ORIGIN).map((_, i) => (i * 13 + (i >> 9)) & 0xff)

/**
 * A small run on memory devices (so its journal is the same every time): two origin writes
 * that copy chunks 1 and 2, and a snapshot read of chunk 2 in between.
 */
async function recordRun(path?: string): Promise<JournalEntry[]> {
  const origin = await openOrigin(MemoryDevice.from(initial()), { journal: { payloads: true, ...(path === undefined ? {} : { path }) } })
  const snap = await origin.createSnapshot(new MemoryDevice(256 * 1024), { chunkSize: 4096 })
  await Promise.all([
    origin.write(4096, new Uint8Array(512).fill(1)),
    snap.read(8192, new Uint8Array(512)),
    origin.write(8192, new Uint8Array(512).fill(2)),
  ])
  await origin.close()
  return [...origin.journal.entries()]
}

const copyOf = (entries: readonly JournalEntry[]) => entries.map((e) => structuredClone(e))
const find = (entries: readonly JournalEntry[], match: Record<string, unknown>): JournalEntry => {
  const found = entries.find((e) => Object.entries(match).every(([k, v]) => e[k] === v))
  if (found === undefined) throw new Error(`no entry like ${JSON.stringify(match)}`)
  return found
}

async function divergence(entries: JournalEntry[]): Promise<ReplayDivergenceError> {
  const error = await replay(entries, { origin: MemoryDevice.from(initial()), cows: [new MemoryDevice(256 * 1024)] })
    .then(() => undefined, (e: unknown) => e)
  expect(error).toBeInstanceOf(ReplayDivergenceError)
  const diverged = error as ReplayDivergenceError
  expect(diverged.code).toBe('SNAPCOW_REPLAY_DIVERGED')
  return diverged
}

describe('replay of an altered journal', () => {
  let recorded: JournalEntry[]
  beforeAll(async () => { recorded = await recordRun() })

  test('the unaltered journal replays', async () => {
    const { entries } = await replay(recorded, { origin: MemoryDevice.from(initial()), cows: [new MemoryDevice(256 * 1024)] })
    expect(entries).toEqual(recorded)
  })

  test('a derived entry changed (a chunk transition\'s `to`): diverges at that very entry', async () => {
    // Transitions are made by the core, so the replay makes the true one where the altered
    // one stands: the seq is the altered entry's, `expected` the altered entry, `actual` the real one.
    const altered = copyOf(recorded)
    const target = find(altered, { type: 'chunk', chunk: 1, event: 'commit-done' })
    expect(target.to).toBe('Completed')
    target.to = 'CompletedWithReaders'
    const error = await divergence(altered)
    expect(error.seq).toBe(target.seq)
    expect(error.expected).toEqual(target)
    expect(error.actual).toEqual({ ...target, to: 'Completed' })
    expect(error.message).toContain(JSON.stringify(target))
    expect(error.message).toContain(JSON.stringify({ ...target, to: 'Completed' }))
  })

  test('a device completion\'s `ok` flipped: diverges at the first consequence, the entry after it', async () => {
    // `complete` is an input: the replay completes the request as the journal says (failed),
    // so it makes the same, altered `complete` entry. What differs is the reaction: the
    // recorded run went on to write the copy to the COW (`submit`), the replay's copier sees
    // its origin read fail and reports `copy-done` with ok false, in the same turn. So the seq
    // is the altered entry's + 1, `expected` the recorded `submit`, `actual` the failed copy.
    const altered = copyOf(recorded)
    const copyRead = find(altered, { type: 'submit', device: 'origin', op: 'read', offset: 4096, length: 4096 })
    const target = find(altered, { type: 'complete', req: copyRead.req })
    target.ok = false
    const next = altered[target.seq]! // the entry after the altered one (seq = index + 1)
    expect(next).toMatchObject({ type: 'submit', device: 'cow0', op: 'write' })
    const error = await divergence(altered)
    expect(error.seq).toBe(target.seq + 1)
    expect(error.expected).toEqual(next)
    expect(error.actual).toEqual({ seq: target.seq + 1, type: 'copy-done', snapshot: 'snap-1', chunk: 1, ok: false })
    expect(error.message).toContain(JSON.stringify(next))
    expect(error.message).toContain(JSON.stringify(error.actual))
  })

  test('a bio\'s offset changed: diverges at the first entry the new offset changes', async () => {
    // The bio is an input, replayed as altered (its own entry matches). The write now lands in
    // chunk 3 instead of chunk 2, so the first entry of its reaction, the chunk-2
    // `hold-origin-write` command, comes out for chunk 3: seq = the bio's + 1.
    const altered = copyOf(recorded)
    const target = find(altered, { type: 'bio', volume: 'origin', op: 'write', offset: 8192 })
    target.offset = 3 * 4096
    const next = altered[target.seq]!
    expect(next).toMatchObject({ type: 'command', chunk: 2, command: 'hold-origin-write' })
    const error = await divergence(altered)
    expect(error.seq).toBe(target.seq + 1)
    expect(error.expected).toEqual(next)
    expect(error.actual).toEqual({ ...next, chunk: 3 })
  })

  test('a completion of a request never submitted: diverges at that entry, with nothing made', async () => {
    const altered = copyOf(recorded)
    const target = find(altered, { type: 'complete' })
    target.req = 999
    const error = await divergence(altered)
    expect(error.seq).toBe(target.seq)
    expect(error.expected).toEqual(target)
    expect(error.actual).toBeUndefined()
    expect(error.message).toContain(JSON.stringify(target))
    expect(error.message).toContain('replay made nothing')
  })

  test('a derived entry left out (and the rest renumbered): diverges where it was', async () => {
    const target = find(recorded, { type: 'command', chunk: 1, command: 'remove-pending' })
    const altered = copyOf(recorded).filter((e) => e.seq !== target.seq).map((e, i) => ({ ...e, seq: i + 1 }))
    const error = await divergence(altered)
    expect(error.seq).toBe(target.seq)
    expect(error.expected).toEqual(altered[target.seq - 1]) // the entry that followed it
    expect(error.actual).toEqual(target)
  })

  test('a journal cut in the middle of a reaction: the replay makes more than recorded', async () => {
    // Cut right after the `release` of chunk 1: the replay goes on to submit the held write.
    const release = find(recorded, { type: 'command', chunk: 1, command: 'release' })
    const cut = copyOf(recorded).slice(0, release.seq)
    const error = await divergence(cut)
    expect(error.seq).toBe(release.seq + 1)
    expect(error.expected).toBeUndefined()
    expect(error.actual).toEqual(recorded[release.seq])
    expect(error.message).toContain('recorded nothing')
  })

  test('a journal cut between inputs is a shorter run and replays', async () => {
    // The last entries are a `complete` and the `done` it causes: without them the request is
    // simply still in flight, which is what a journal of an interrupted run looks like.
    const lastComplete = recorded.findLast((e) => e.type === 'complete')!
    const prefix = copyOf(recorded).slice(0, lastComplete.seq - 1)
    const { entries } = await replay(prefix, { origin: MemoryDevice.from(initial()), cows: [new MemoryDevice(256 * 1024)] })
    expect(entries).toEqual(prefix)
  })
})

/** Writes a recorded journal to a file and returns its lines (no trailing newline). */
async function journalLines(name: string): Promise<{ path: string; lines: string[] }> {
  const path = join(dir, name)
  await recordRun(path)
  const lines = readFileSync(path, 'utf8').split('\n')
  expect(lines.pop()).toBe('') // the file ends with a newline
  return { path, lines }
}

async function readAll(path: string): Promise<JournalEntry[]> {
  const out: JournalEntry[] = []
  for await (const entry of readJournal(path)) out.push(entry)
  return out
}

async function journalError(promise: Promise<unknown>): Promise<SnapcowError> {
  const error = await promise.then(() => undefined, (e: unknown) => e)
  expect(error).toBeInstanceOf(SnapcowError)
  expect((error as SnapcowError).code).toBe('SNAPCOW_JOURNAL')
  return error as SnapcowError
}

describe('readJournal on a damaged file', () => {
  test('an intact file reads back as recorded', async () => {
    const path = join(dir, 'intact.jsonl')
    const recorded = await recordRun(path)
    expect(await readAll(path)).toEqual(recorded)
  })

  test('the last line cut in half: SNAPCOW_JOURNAL naming that line', async () => {
    const { path, lines } = await journalLines('truncated.jsonl')
    const last = lines.length
    const text = lines.join('\n')
    writeFileSync(path, text.slice(0, text.length - Math.floor(lines[last - 1]!.length / 2)))
    const error = await journalError(readAll(path))
    expect(error.message).toContain(`line ${last} `)
    expect(error.message).toContain('truncated or corrupt')
    // and replay of the file refuses it the same way, before making anything
    await journalError(replay(readJournal(path)))
  })

  test('a corrupted line in the middle: SNAPCOW_JOURNAL naming that line', async () => {
    const { path, lines } = await journalLines('corrupt.jsonl')
    lines[9] = lines[9]!.replace('"type"', '"type":,')
    writeFileSync(path, `${lines.join('\n')}\n`)
    const error = await journalError(readAll(path))
    expect(error.message).toContain('line 10 ')
    expect(error.message).toContain(path)
  })

  test('a line that is JSON but no entry: SNAPCOW_JOURNAL naming that line', async () => {
    const { path, lines } = await journalLines('not-entry.jsonl')
    lines[4] = JSON.stringify({ seq: 5, kind: 'complete' })
    writeFileSync(path, `${lines.join('\n')}\n`)
    const error = await journalError(readAll(path))
    expect(error.message).toContain('line 5 ')
  })

  test('a missing line (a seq gap): SNAPCOW_JOURNAL naming the line after the gap', async () => {
    const { path, lines } = await journalLines('gap.jsonl')
    lines.splice(6, 1) // seq 7 is gone: line 7 now holds seq 8
    writeFileSync(path, `${lines.join('\n')}\n`)
    const error = await journalError(readAll(path))
    expect(error.message).toContain('line 7 has seq 8, expected 7')
  })

  test('lines out of order: SNAPCOW_JOURNAL naming the first misplaced line', async () => {
    const { path, lines } = await journalLines('swapped.jsonl')
    ;[lines[11], lines[12]] = [lines[12]!, lines[11]!]
    writeFileSync(path, `${lines.join('\n')}\n`)
    const error = await journalError(readAll(path))
    expect(error.message).toContain('line 12 has seq 13')
  })

  test('a file that does not exist: SNAPCOW_JOURNAL', async () => {
    const error = await journalError(readAll(join(dir, 'no-such.jsonl')))
    expect(error.message).toContain('no-such.jsonl')
  })

  test('an empty file: replay refuses it (no "open" entry)', async () => {
    const path = join(dir, 'empty.jsonl')
    writeFileSync(path, '')
    expect(await readAll(path)).toEqual([])
    const error = await journalError(replay(readJournal(path)))
    expect(error.message).toContain('"open"')
  })
})

/** Open descriptors of this process that point at `target`. */
const openDescriptors = (target: string) => readdirSync('/proc/self/fd').filter((fd) => {
  try { return readlinkSync(`/proc/self/fd/${fd}`) === target } catch { return false }
}).length

/**
 * Requests issued one after another until one rejects (the journal file's failure shows up).
 * Each try waits a turn of the event loop: the failed file write is reported by a threadpool
 * callback, which a loop of requests that resolve as microtasks would never let run.
 */
async function firstRejection(request: () => Promise<unknown>, tries = 500): Promise<{ error: unknown }> {
  for (let i = 0; i < tries; i++) {
    const error = await request().then(() => undefined, (e: unknown) => e)
    if (error !== undefined) return { error }
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  throw new Error(`no request failed in ${tries} tries`)
}

describe('a journal file that cannot be opened or written', () => {
  test('a path in a directory that does not exist: openOrigin rejects with SNAPCOW_JOURNAL', async () => {
    const path = join(dir, 'no', 'such', 'dir', 'run.jsonl')
    const error = await journalError(openOrigin(new MemoryDevice(ORIGIN), { journal: { path } }))
    expect(error.message).toContain(path)
    expect(error.cause).toMatchObject({ code: 'ENOENT' })
  })

  test('writes that fail (/dev/full): later I/O, drain() and close() reject with SNAPCOW_JOURNAL', async () => {
    const descriptors = openDescriptors('/dev/full')
    const device = new MemoryDevice(ORIGIN)
    const origin = await openOrigin(device, { journal: { path: '/dev/full' } })
    expect(openDescriptors('/dev/full')).toBe(descriptors + 1)
    // The first lines are written one event-loop turn after they are made; until that write has
    // failed, requests are taken (and acknowledged: their lines are lost, and the failure is
    // reported by every later call). From then on every new request is refused, untouched.
    const { error } = await firstRejection(() => origin.write(0, new Uint8Array(512).fill(7)))
    expect(error).toBeInstanceOf(SnapcowError)
    expect(error).toMatchObject({ code: 'SNAPCOW_JOURNAL' })
    expect((error as Error).message).toContain('/dev/full')
    expect((error as Error).message).toContain('ENOSPC')
    const before = device.snapshotBytes()
    await journalError(origin.write(4096, new Uint8Array(512).fill(8)))
    await journalError(origin.read(0, new Uint8Array(512)))
    await journalError(origin.flush())
    await journalError(origin.createSnapshot(new MemoryDevice(64 * 1024)))
    expect(Buffer.from(device.snapshotBytes()).equals(Buffer.from(before))).toBe(true) // refused: nothing written
    await journalError(origin.journal.drain())
    await journalError(origin.close())
    expect(openDescriptors('/dev/full')).toBe(descriptors) // the file is closed all the same
  })

  test('writes that fail with a snapshot attached: snapshot I/O and close() reject with SNAPCOW_JOURNAL', async () => {
    const origin = await openOrigin(new MemoryDevice(ORIGIN), { journal: { path: '/dev/full' } })
    const snap = await origin.createSnapshot(new MemoryDevice(64 * 1024), { chunkSize: 4096 })
    await firstRejection(() => origin.write(0, new Uint8Array(512).fill(7)))
    await journalError(snap.read(0, new Uint8Array(512)))
    await journalError(snap.write(0, new Uint8Array(512)))
    await journalError(origin.close())
  })

  // KNOWN FAILURE (reported, not fixed here): Origin._close() drops the snapshots first; each
  // drop is a journaled request, refused with the journal's error, so Promise.all rejects and
  // `this.#file.close()` is never reached: the journal file's descriptor stays open (and the
  // snapshot stays attached).
  test('close() after a failed journal write still closes the journal file (snapshot attached)', async () => {
    const descriptors = openDescriptors('/dev/full')
    const origin = await openOrigin(new MemoryDevice(ORIGIN), { journal: { path: '/dev/full' } })
    await origin.createSnapshot(new MemoryDevice(64 * 1024), { chunkSize: 4096 })
    await firstRejection(() => origin.write(0, new Uint8Array(512).fill(7)))
    await journalError(origin.close())
    expect(openDescriptors('/dev/full')).toBe(descriptors)
  })
})
