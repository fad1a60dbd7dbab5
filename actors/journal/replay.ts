// actors/journal/replay.ts: runs a recorded journal again (architecture rule 2, api.md): a
// fresh origin takes the recorded inputs in the recorded order, its devices complete requests
// when the journal says they did, and every entry it makes must equal the recorded one. With
// payloads and the initial images, the devices end holding the recorded run's final images.
import { isDeepStrictEqual } from 'node:util'
import type { BlockDevice } from '../../io/block-device.js'
import { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import type { Origin } from '../origin-volume.js'
import { openOrigin } from '../origin-volume.js'
import { releaseAll } from '../device-claims.js'
import type { Snapshot } from '../snapshot-volume.js'
import type { SnapshotStatus } from '../status.js'
import type { JournalEntry } from './journal.js'

/** A replay that made an entry other than the recorded one. */
export class ReplayDivergenceError extends SnapcowError {
  constructor(readonly seq: number, readonly expected: JournalEntry | undefined, readonly actual: JournalEntry | undefined) {
    super('SNAPCOW_REPLAY_DIVERGED', `replay diverged at seq ${seq}: recorded ${JSON.stringify(expected) ?? 'nothing'}, replay made ${JSON.stringify(actual) ?? 'nothing'}`)
    this.name = 'ReplayDivergenceError'
  }
}

export interface ReplayOptions {
  /** The origin's initial image (default: a zeroed MemoryDevice of the recorded size). */
  origin?: BlockDevice
  /** The COW devices' initial images, in the order the journal first uses them. */
  cows?: BlockDevice[]
}

const INPUTS = new Set(['bio', 'snapshot', 'merge', 'drop', 'complete'])
const MAX_IDLE_TURNS = 10_000

/**
 * Replays a journal; resolves with the entries it made (equal to the recorded ones) and the
 * status of every snapshot, or rejects with a ReplayDivergenceError naming the first
 * differing sequence number and both entries.
 * @example
 * const { entries } = await replay(readJournal('run.jsonl'), { origin: copyOfOrigin, cows: [copyOfCow] })
 */
export async function replay(recorded: Iterable<JournalEntry> | AsyncIterable<JournalEntry>,
  options: ReplayOptions = {}): Promise<{ entries: JournalEntry[]; statuses: SnapshotStatus[] }> {
  const expected: JournalEntry[] = []
  for await (const entry of recorded) expected.push(entry)
  const open = expected[0]
  if (open === undefined || open.type !== 'open' || typeof open.size !== 'number') {
    throw new SnapcowError('SNAPCOW_JOURNAL', 'a journal starts with an "open" entry giving the origin size')
  }
  const origin = await openOrigin(options.origin ?? new MemoryDevice(open.size),
    { journal: { payloads: open.payloads === true }, replaying: true })
  const made = origin.journal.entries()
  const snapshots = new Map<string, Snapshot>()
  const all: Snapshot[] = []

  const check = (upTo: number) => {
    for (let i = 0; i < Math.min(upTo, made.length, expected.length); i++) {
      if (!isDeepStrictEqual(made[i], expected[i])) throw new ReplayDivergenceError(i + 1, expected[i], made[i])
    }
  }
  const reach = async (count: number) => {
    for (let turns = 0; made.length < count && turns < MAX_IDLE_TURNS; turns++) await new Promise((r) => setImmediate(r))
    check(count)
    if (made.length < count) throw new ReplayDivergenceError(made.length + 1, expected[made.length], undefined)
  }

  for (const entry of expected) {
    if (!INPUTS.has(entry.type)) continue
    await reach(entry.seq - 1) // everything before this input has happened again
    issue(origin, entry, options, snapshots, all)
    await reach(entry.seq)
  }
  await reach(expected.length)
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
  check(expected.length)
  if (made.length > expected.length) throw new ReplayDivergenceError(expected.length + 1, undefined, made[expected.length])
  const result = { entries: [...made], statuses: all.map((s) => s.status()) }
  // Let the caller's devices go: the replaying origin claims them while open. Its close is
  // not awaited (a journal cut mid-run leaves requests that never complete) and what it
  // journals is not part of the recorded run.
  void origin.close().catch(() => undefined)
  releaseAll(origin)
  return result
}

/** Feeds one recorded input to the replaying origin (results come back as entries). */
function issue(origin: Origin, entry: JournalEntry, options: ReplayOptions, snapshots: Map<string, Snapshot>, all: Snapshot[]): void {
  const quiet = (p: Promise<unknown>) => { p.catch(() => undefined) }
  switch (entry.type) {
    case 'complete':
      if (!origin.recorder!.replayComplete(entry.req as number, entry.ok as boolean, typeof entry.error === 'string' ? entry.error : undefined)) {
        throw new ReplayDivergenceError(entry.seq, entry, undefined)
      }
      return
    case 'snapshot': {
      const cow = options.cows?.[entry.cow as number] ?? new MemoryDevice(entry.cowSize as number)
      const made = entry.op === 'create'
        ? origin.createSnapshot(cow, { chunkSize: entry.chunkSize as number, persistent: entry.persistent as boolean, overflow: entry.overflow as boolean })
        : origin.loadSnapshot(cow, { overflow: entry.overflow as boolean, ...(typeof entry.chunkSize === 'number' ? { chunkSize: entry.chunkSize } : {}) })
      made.then((s) => { snapshots.set(s.id, s); all.push(s) }, () => undefined)
      return
    }
    case 'merge':
      return quiet(volume(snapshots, entry.snapshot as string).merge())
    case 'drop':
      return quiet(volume(snapshots, entry.snapshot as string).closeWithOrigin()) // journaled only when the detach went ahead
    case 'bio': {
      const target = entry.volume === 'origin' ? origin : volume(snapshots, entry.volume as string)
      const length = entry.length as number
      if (entry.op === 'flush') return quiet(target.flush())
      if (entry.op === 'read') return quiet(target.read(entry.offset as number, new Uint8Array(length)))
      const data = typeof entry.data === 'string' ? new Uint8Array(Buffer.from(entry.data, 'base64')) : new Uint8Array(length)
      return quiet(target.write(entry.offset as number, data))
    }
  }
}

function volume(snapshots: Map<string, Snapshot>, id: string): Snapshot {
  const found = snapshots.get(id)
  if (found === undefined) throw new SnapcowError('SNAPCOW_REPLAY_DIVERGED', `replay: the journal uses snapshot ${id}, which the replay never made`)
  return found
}
