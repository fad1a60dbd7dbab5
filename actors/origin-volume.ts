// actors/origin-volume.ts: the origin as a BlockDevice (spec §2 `snapshot-origin`): reads pass
// straight to the device, writes run the origin-write protocol, and snapshots are made here.
import type { Observable } from 'rxjs'
import type { BlockDevice } from '../io/block-device.js'
import { DeviceBase } from '../io/device-base.js'
import { CowFormatError } from '../io/errors.js'
import { PersistentStore } from '../io/cow-format/persistent-store.js'
import { TransientStore } from '../io/cow-format/transient-store.js'
import { decodeHeader, SNAPSHOT_MAGIC } from '../io/cow-format/header.js'
import type { ExceptionStore } from '../io/exception-store.js'
import type { ByteOffset } from '../io/units.js'
import { asNewChunk, asOldChunk, SECTOR_BYTES } from '../io/units.js'
import { SnapcowError } from '../io/errors.js'
import { CompletedTable } from './completed-table.js'
import type { EngineOptions } from './engine.js'
import { Engine } from './engine.js'
import { Journal } from './journal/journal.js'
import type { JournalEntry, NewEntry } from './journal/journal.js'
import { JournalFile } from './journal/journal-file.js'
import type { JournalIfExists } from './journal/journal-file.js'
import { Recorder } from './journal/recorder.js'
import type { CreateSnapshotOptions } from './snapshot-options.js'
import { checkCowDevice, checkSnapshotOptions } from './snapshot-options.js'
import { SnapshotCore } from './snapshot-core.js'
import { Snapshot } from './snapshot-volume.js'
import { claimDevice, releaseAll, releaseDevice, transferClaims } from './device-claims.js'

/** Options of `openOrigin`. */
export interface OpenOriginOptions extends EngineOptions {
  /**
   * Journal every input, command and chunk transition (docs/events.md): `{}` in memory,
   * `{ path }` also as a JSON Lines file, `payloads: true` to keep written data (needed for a
   * byte-exact replay). An existing file at `path` is refused (SNAPCOW_JOURNAL) unless
   * `ifExists: 'overwrite'`. Off by default: with it on, inputs are taken one per event-loop turn.
   */
  journal?: { path?: string; payloads?: boolean; ifExists?: JournalIfExists } | false
  /** @internal replay() drives the devices' completions from a recorded journal. */
  replaying?: boolean
}

/** @internal How a volume takes a caller's request: straight, or through the journal. */
export interface Inputs {
  request<T>(describe: (bio: number) => NewEntry, run: () => Promise<T>): Promise<T>
}

/** Options of `Origin.loadSnapshot`. */
export interface LoadSnapshotOptions {
  /** Load the store as the kernel's 'PO' (a full COW on a snapshot write is Overflow, not Invalid). */
  overflow?: boolean
  /**
   * Bytes: the chunk size you expect. The store's header decides the chunk size; when this is
   * given and differs, the load is refused (`SNAPCOW_CHUNK_SIZE_MISMATCH`) rather than ignored.
   */
  chunkSize?: number
  /** A stable name (NBD export name, status output); default: the snapshot's id, snap-<n>. */
  name?: string
}

const direct: Inputs = { request: (_describe, run) => run() }

/**
 * An origin volume and its snapshots.
 * @example
 * const origin = await openOrigin(await FileDevice.open('origin.img'))
 * const snap = await origin.createSnapshot(await FileDevice.open('cow.img', { create: true, size: 64 << 20 }))
 */
export class Origin extends DeviceBase {
  readonly #engine: Engine
  readonly #inputs: Inputs
  #snapshots: Snapshot[] = []
  #activations = 0
  #cows = 0
  /** The caller's COW device behind each journaled one. */
  readonly #rawCow = new WeakMap<BlockDevice, BlockDevice>()
  /** The journal (empty unless openOrigin was given `journal`). */
  readonly journal: Journal
  /** @internal */
  readonly recorder: Recorder | undefined
  readonly #file: JournalFile | undefined

  /** @internal Use openOrigin(). */
  constructor(readonly device: BlockDevice, options: OpenOriginOptions, journal: Journal, file?: JournalFile) {
    super(device.size, { flush: true, persistent: device.supports?.persistent ?? false })
    this.journal = journal
    this.#file = file
    this.recorder = journal.enabled ? new Recorder(journal, options.replaying === true) : undefined
    const recorder = this.recorder
    this.#engine = new Engine(recorder?.wrap(device, 'origin') ?? device, options)
    this.#engine.journal = journal.enabled ? journal : undefined
    this.#inputs = recorder === undefined ? direct : {
      request: (describe, run) => {
        const failed = file?.error
        return failed !== undefined ? Promise.reject(failed) : recorder.request(describe, run)
      },
    }
    journal.record({ type: 'open', size: device.size, payloads: journal.payloads })
  }

  /**
   * Every journal entry (docs/events.md): a new subscriber first gets the entries made so far,
   * from `open` (seq 1) on, then each new one as it is made, each exactly once and in seq
   * order. Silent unless the journal is on.
   */
  get events$(): Observable<JournalEntry> {
    return this.journal.events$
  }

  /** @internal Journals a caller's write/read/flush of a volume as one input. */
  volumeRequest(volume: string, op: 'read' | 'write' | 'flush', offset: number, data: Uint8Array | undefined, run: () => Promise<void>): Promise<void> {
    return this.#inputs.request((bio) => ({
      type: 'bio', bio, volume, op, offset, length: data?.length ?? 0,
      ...(op === 'write' && this.journal.payloads && data !== undefined ? { data: Buffer.from(data).toString('base64') } : {}),
    }), run)
  }

  /** @internal */
  get inputs(): Inputs {
    return this.#inputs
  }

  /** Active snapshots, in the order they were made. */
  get snapshots(): readonly Snapshot[] {
    return this.#snapshots
  }

  /**
   * Makes a new snapshot on `cow` and activates it (no origin write is in flight at that
   * instant). A persistent store is durable on the COW device when this resolves. Refuses a
   * COW that already holds a snapshot store (use loadSnapshot) rather than overwrite it, and
   * (`SNAPCOW_BUSY`) a COW that another open origin uses as its origin or a snapshot's COW.
   */
  async createSnapshot(cow: BlockDevice, options: CreateSnapshotOptions = {}): Promise<Snapshot> {
    this.#checkOpen()
    this.#checkCow(cow)
    const checked = checkSnapshotOptions(options)
    this.#checkName(options.name)
    this.#refuseWhileMerging() // before anything is written to the COW
    claimDevice(cow, this, 'cow', 'createSnapshot')
    const index = this.#cows++
    return this.#unclaimOnFailure(cow, this.#inputs.request((bio) => ({ type: 'snapshot', bio, op: 'create', cow: index, cowSize: cow.size,
      chunkSize: checked.chunkSectors * SECTOR_BYTES, persistent: checked.persistent, overflow: checked.overflow }),
    () => this.#create(this.#takeCow(cow, index), checked))).then((snapshot) => snapshot.named(options.name))
  }

  async #create(cow: BlockDevice, checked: ReturnType<typeof checkSnapshotOptions>): Promise<Snapshot> {
    let store: ExceptionStore
    if (checked.persistent) {
      await refuseExistingStore(cow)
      store = await PersistentStore.create(cow, checked.chunkSectors)
    } else {
      if (cow.size < checked.chunkSectors * SECTOR_BYTES) {
        throw new CowFormatError('SNAPCOW_COW_TOO_SMALL', 'size', cow.size,
          `COW device of ${cow.size} bytes is too small for one ${checked.chunkSectors * SECTOR_BYTES}-byte chunk`)
      }
      store = new TransientStore(cow, checked.chunkSectors)
    }
    try {
      return await this.#attach(cow, store, new CompletedTable(), checked.overflow, true)
    } catch (error) {
      // Refused at activation (a merge started while the store was written): the COW reads
      // as "no store" again, as if createSnapshot had never run, so no empty store is left
      // behind that a later createSnapshot would refuse without force.
      if (checked.persistent) await eraseHeader(cow).catch(() => undefined)
      throw error
    }
  }

  /**
   * Opens a persistent store written earlier, by snapcow or by Linux, and activates it.
   * Rejects a device with no store (magic 0), a foreign one, or a corrupt one, writing nothing;
   * also a store made for a smaller origin (a record past this origin's last chunk), a header
   * chunk size other than `options.chunkSize`, and (`SNAPCOW_BUSY`) a COW in use by another origin.
   */
  async loadSnapshot(cow: BlockDevice, options: LoadSnapshotOptions = {}): Promise<Snapshot> {
    this.#checkOpen()
    this.#checkCow(cow)
    if (options.overflow !== undefined && typeof options.overflow !== 'boolean') {
      throw new TypeError(`overflow must be a boolean, got ${String(options.overflow)}`)
    }
    const chunkSectors = options.chunkSize === undefined ? undefined : checkSnapshotOptions({ chunkSize: options.chunkSize }).chunkSectors
    this.#checkName(options.name)
    claimDevice(cow, this, 'cow', 'loadSnapshot')
    const index = this.#cows++
    return this.#unclaimOnFailure(cow, this.#inputs.request((bio) => ({ type: 'snapshot', bio, op: 'load', cow: index, cowSize: cow.size,
      overflow: options.overflow === true, ...(chunkSectors === undefined ? {} : { chunkSize: chunkSectors * SECTOR_BYTES }) }),
    () => this.#load(this.#takeCow(cow, index), options.overflow === true, chunkSectors))).then((snapshot) => snapshot.named(options.name))
  }

  /** A COW whose snapshot could not be made is free again. */
  #unclaimOnFailure(cow: BlockDevice, made: Promise<Snapshot>): Promise<Snapshot> {
    return made.catch((error: unknown) => {
      releaseDevice(cow, this)
      throw error
    })
  }

  /** The COW as the engine sees it (journaled when the journal is on). */
  #takeCow(cow: BlockDevice, index: number): BlockDevice {
    const seen = this.recorder?.wrap(cow, `cow${index}`) ?? cow
    this.#rawCow.set(seen, cow)
    return seen
  }

  async #load(cow: BlockDevice, overflow: boolean, chunkSectors: number | undefined): Promise<Snapshot> {
    // Records are gathered first so the table is made at its final size (no rehash per doubling).
    let pairs = new Float64Array(2048)
    let count = 0
    const store = await PersistentStore.load(cow, {
      onException: (o, n) => {
        if (2 * count === pairs.length) {
          const more = new Float64Array(pairs.length * 2)
          more.set(pairs)
          pairs = more
        }
        pairs[2 * count] = o
        pairs[2 * count++ + 1] = n
      },
      originBytes: this.size, // a store made for a smaller origin is refused, not misread
      ...(chunkSectors === undefined ? {} : { chunkSectors }),
    })
    const table = new CompletedTable(count)
    for (let i = 0; i < count; i++) table.set(asOldChunk(pairs[2 * i]!), asNewChunk(pairs[2 * i + 1]!)) // row 20
    return this.#attach(cow, store, table, overflow, false)
  }

  async #attach(cow: BlockDevice, store: ExceptionStore, table: CompletedTable, overflow: boolean, fresh: boolean): Promise<Snapshot> {
    const n = ++this.#activations
    const core = new SnapshotCore(`snap-${n}`, cow, store, store.chunkSectors, overflow, n, table)
    // A merge may have started while the store was written: checked again at the activation instant.
    await this.#engine.activate(core, fresh ? () => this.#refuseWhileMerging() : undefined)
    const snapshot = new Snapshot(this.#engine, core, this.size, (gone) => {
      this.#snapshots = this.#snapshots.filter((s) => s !== gone)
      releaseDevice(this.#rawCow.get(cow) ?? cow, this) // dropped or merged away: the COW is free
    }, this)
    this.#snapshots = [...this.#snapshots, snapshot]
    return snapshot
  }

  protected override _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    if (this.recorder === undefined) return this.#engine.readOrigin(offset, into) // the hot path
    // spec §5.1 (straight to the device), or §12 while merging
    return this.volumeRequest('origin', 'read', offset, into, () => this.#engine.readOrigin(offset, into))
  }

  protected override _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    if (this.recorder === undefined) return this.#engine.writeOrigin(offset, data)
    return this.volumeRequest('origin', 'write', offset, data, () => this.#engine.writeOrigin(offset, data))
  }

  /** Every acknowledged origin write durable, the ones a merge sent to its COW included. */
  protected override _flush(): Promise<void> {
    if (this.recorder === undefined) return this.#engine.flushOrigin()
    return this.volumeRequest('origin', 'flush', 0, undefined, () => this.#engine.flushOrigin())
  }

  /**
   * Drops every snapshot (their stores stay valid) and finishes the journal file; the devices
   * stay open: the caller owns them.
   */
  protected override async _close(): Promise<void> {
    try {
      const dropped = await Promise.allSettled(this.#snapshots.map((s) => s.closeWithOrigin()))
      const failed = dropped.find((r) => r.status === 'rejected')
      if (failed !== undefined) throw failed.reason
    } finally {
      releaseAll(this) // the origin device and the COWs are free for another origin
      await this.#file?.close() // even when a drop failed: never leave the file open
    }
  }

  /** Spec §15: the COW is neither the origin (device or volume), nor one of its snapshots, nor another's COW. */
  #checkCow(cow: BlockDevice): void {
    if (cow === this) throw new TypeError('the COW device is the origin volume itself: a snapshot needs a device of its own')
    if ((this.#snapshots as readonly BlockDevice[]).includes(cow)) {
      throw new TypeError('the COW device is a snapshot of this same origin: a snapshot needs a device of its own')
    }
    checkCowDevice(cow, this.device, this.#engine.snapshots.map((s) => this.#rawCow.get(s.cow) ?? s.cow))
  }

  /**
   * As LVM refuses it: while a snapshot merges (or its merge stopped or failed part way) the
   * origin reads through that snapshot's COW, and a new snapshot would copy the raw device.
   */
  #refuseWhileMerging(): void {
    const merging = this.#engine.merging ?? this.#engine.mergeReserved
    if (merging !== undefined) {
      throw new SnapcowError('SNAPCOW_MERGING',
        `snapshot ${merging.id} of this origin is being merged (or its merge has not finished): finish the merge before creating a snapshot`)
    }
  }

  /** A name must be a non-empty string no other snapshot of this origin uses (NBD exports and status name it). */
  #checkName(name: unknown): void {
    if (name === undefined) return
    if (typeof name !== 'string' || name === '' || name.length > 256) {
      throw new TypeError(`name must be a non-empty string of at most 256 characters, got ${typeof name === 'string' ? JSON.stringify(name) : String(name)}`)
    }
    const taken = this.#snapshots.find((s) => s.name === name)
    if (taken !== undefined) throw new TypeError(`name ${JSON.stringify(name)} is already the name of snapshot ${taken.id} of this origin`)
  }

  #checkOpen(): void {
    if (this.closed) throw new SnapcowError('SNAPCOW_DEVICE_CLOSED', 'the origin is closed')
  }

  /** @internal For tests: the engine behind this origin. */
  get engine(): Engine {
    return this.#engine
  }
}

/** Never overwrite a store by accident: a "SnAp" header means there is one. */
async function refuseExistingStore(cow: BlockDevice): Promise<void> {
  if (cow.size < SECTOR_BYTES) return // PersistentStore.create reports the size
  const first = new Uint8Array(SECTOR_BYTES)
  await cow.read(0, first)
  if (decodeHeader(first).magic === SNAPSHOT_MAGIC) {
    throw new SnapcowError('SNAPCOW_STORE_EXISTS',
      'the COW device already holds a snapshot store ("SnAp" header): open it with loadSnapshot, or zero its first sector to start over')
  }
}

/**
 * Opens an origin volume on a device. The engine never closes a device it was given. Refuses
 * (`SNAPCOW_BUSY`) a device that another open origin in this process uses as its origin or as a
 * snapshot's COW, as the kernel claims a device exclusively; `close()` releases it.
 * @example
 * const origin = await openOrigin(new MemoryDevice(16 << 20))
 */
export async function openOrigin(device: BlockDevice, options: OpenOriginOptions = {}): Promise<Origin> {
  if (typeof device !== 'object' || device === null || typeof device.read !== 'function') {
    throw new TypeError(`openOrigin needs a BlockDevice, got ${String(device)}`)
  }
  const wanted = options.journal !== undefined && options.journal !== false
  const settings = wanted ? options.journal as { path?: string; payloads?: boolean; ifExists?: JournalIfExists } : {}
  if (settings.path !== undefined && typeof settings.path !== 'string') throw new TypeError(`journal.path must be a string, got ${String(settings.path)}`)
  if (settings.ifExists !== undefined && settings.ifExists !== 'fail' && settings.ifExists !== 'overwrite') {
    throw new TypeError(`journal.ifExists must be 'fail' or 'overwrite', got ${typeof settings.ifExists === 'string' ? JSON.stringify(settings.ifExists) : String(settings.ifExists)}`)
  }
  const token = {} // the claim is taken before any await, so two racing opens cannot both win
  claimDevice(device, token, 'origin', 'openOrigin')
  try {
    const file = settings.path !== undefined ? await JournalFile.create(settings.path, settings.ifExists) : undefined
    const origin = new Origin(device, options, new Journal(wanted, settings.payloads === true, file), file)
    transferClaims(token, origin)
    return origin
  } catch (error) {
    releaseAll(token)
    throw error
  }
}

/** Zeroes the header's first sector (magic 0: no store, spec §9.1) and makes it durable. */
async function eraseHeader(cow: BlockDevice): Promise<void> {
  await cow.write(0, new Uint8Array(SECTOR_BYTES))
  await cow.flush()
}
