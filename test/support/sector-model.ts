// test/support/sector-model.ts: a per-sector "allowed values" model of volumes, for crash and
// reordering tests. Every write stamps each of its sectors with its own id, so a sector read
// back names the write it came from. A sector may hold the last write that was acknowledged
// before the reference point (a read's start, or a resolved flush before a crash), or any
// write that was in flight or came later; never one that a settled later write replaced.

const SECTOR = 512
const MAGIC = 0x5ec7_0b1d

/** One write (or the initial content, id 0) as the model sees it. Times are logical. */
export interface WriteRecord {
  id: number
  /** The volume it went through ('origin', 's0', …): which flushes cover it. */
  volume: string
  issue: number
  /** When it resolved; Infinity while in flight, or for good if it failed (it may have partly landed). */
  ack: number
  initial?: boolean
}

/** The 512 bytes sector `sector` of a volume holds after write `id`. */
export function stamp(id: number, sector: number): Uint8Array {
  const out = new Uint8Array(SECTOR)
  const view = new DataView(out.buffer)
  view.setUint32(0, MAGIC, true)
  view.setUint32(4, id, true)
  view.setUint32(8, sector, true)
  const fill = (id * 31 + sector * 7) & 0xff
  out.fill(fill, 12)
  return out
}

/** `count` stamped sectors from `sector` on, for write `id`. */
export function stamped(id: number, sector: number, count: number): Uint8Array {
  const out = new Uint8Array(count * SECTOR)
  for (let i = 0; i < count; i++) out.set(stamp(id, sector + i), i * SECTOR)
  return out
}

/** The write id a sector read back holds, or a description of the garbage it holds. */
export function decode(bytes: Uint8Array, sector: number): number | string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR)
  if (view.getUint32(0, true) !== MAGIC) return `garbage (no stamp, first bytes ${[...bytes.subarray(0, 8)].join(',')})`
  const id = view.getUint32(4, true)
  const at = view.getUint32(8, true)
  if (at !== sector) return `write ${id}'s data for sector ${at} (misplaced)`
  const fill = (id * 31 + sector * 7) & 0xff
  for (let i = 12; i < SECTOR; i++) if (bytes[i] !== fill) return `write ${id}'s stamp over other bytes (byte ${i})`
  return id
}

/** Logical time: every issue, acknowledgement and cut gets the next number. */
export class LogicalClock {
  #now = 0
  tick(): number { return ++this.#now }
  get now(): number { return this.#now }
}

/**
 * The model of one volume: per sector, the writes that went to it in issue order. A snapshot's
 * model starts with the origin's entries of the moment it was made (its "pre-creation" part);
 * `pin` records what a read right after creation saw, which settles writes that raced it.
 */
export class VolumeModel {
  readonly lists: WriteRecord[][]
  /** Time createSnapshot was called and resolved (−1 for an origin). */
  createCall = -1
  created = -1
  pins: Array<WriteRecord | undefined> | undefined

  constructor(lists: WriteRecord[][]) {
    this.lists = lists
  }

  static initial(sectors: number): VolumeModel {
    const init: WriteRecord = { id: 0, volume: 'init', issue: -1, ack: -1, initial: true }
    return new VolumeModel(Array.from({ length: sectors }, () => [init]))
  }

  /** A snapshot of this volume: its members at time `created` (createSnapshot called at `createCall`). */
  snapshot(createCall: number, created: number): VolumeModel {
    const m = new VolumeModel(this.lists.map((list, s) => list.filter((w) => w.issue < created && this.isMember(w, s))))
    m.createCall = createCall
    m.created = created
    return m
  }

  /** Whether w can be part of this volume's content at all (a snapshot leaves out later origin writes). */
  isMember(w: WriteRecord, sector: number): boolean {
    if (w.issue >= this.created) return true // written to this volume
    const pin = this.pins?.[sector]
    return pin === undefined ? true : w.issue <= pin.issue
  }

  record(w: WriteRecord, sector: number, count: number): void {
    for (let s = sector; s < sector + count; s++) this.lists[s]!.push(w)
  }

  /** Settles the pre-creation part of sector `s` to what a read right after creation saw. */
  pin(s: number, id: number): void {
    this.pins ??= []
    this.pins[s] = this.lists[s]!.find((w) => w.id === id && w.issue < this.created)
  }

  /** Ids a read of sector s that started at `start` and ended at `end` may return. */
  allowedInMemory(s: number, start: number, end: number): Set<number> {
    const pin = this.pins?.[s]
    return allowed(this.lists[s]!.filter((w) => w.issue < end && (w.issue >= this.created || pin === undefined || w === pin)),
      (w) => w.initial === true || w === pin
        || (w.issue < this.created ? w.ack < this.createCall : w.ack < start))
  }

  /** Ids sector s may hold after a cut at `cut`, given which writes a resolved flush made durable. */
  allowedAfterCut(s: number, cut: number, durable: (w: WriteRecord) => boolean): Set<number> {
    return allowed(this.lists[s]!.filter((w) => w.issue < cut && this.isMember(w, s)),
      (w) => w.initial === true || durable(w))
  }

  /** Names the write of an id, for failure messages. */
  describe(s: number, id: number): string {
    const w = this.lists[s]!.find((x) => x.id === id)
    if (w === undefined) return `write ${id} (never went to this volume's sector ${s})`
    return w.initial === true ? 'the initial content' : `write ${id} to ${w.volume} (issued t${w.issue}, ${w.ack === Infinity ? 'never acknowledged' : `acknowledged t${w.ack}`})`
  }
}

/** Candidates not replaced by a settled write issued after they were acknowledged. */
function allowed(candidates: WriteRecord[], settled: (w: WriteRecord) => boolean): Set<number> {
  let latestSettledIssue = Number.NEGATIVE_INFINITY
  for (const w of candidates) if (settled(w) && w.issue > latestSettledIssue) latestSettledIssue = w.issue
  const out = new Set<number>()
  for (const w of candidates) if (!(latestSettledIssue > w.ack)) out.add(w.id)
  return out
}

/**
 * Checks every sector of `bytes` (sectors from `first` on) against `allowedOf`; returns a
 * message naming the first wrong sector, or undefined.
 */
export function firstDisallowed(bytes: Uint8Array, first: number, model: VolumeModel,
  allowedOf: (sector: number) => Set<number>): string | undefined {
  for (let i = 0; i * SECTOR < bytes.length; i++) {
    const s = first + i
    const got = decode(bytes.subarray(i * SECTOR, (i + 1) * SECTOR), s)
    const ok = allowedOf(s)
    if (typeof got === 'number' && ok.has(got)) continue
    const shown = typeof got === 'number' ? model.describe(s, got) : got
    return `sector ${s} holds ${shown}; allowed: ${[...ok].map((id) => model.describe(s, id)).join(' | ')}`
  }
  return undefined
}
