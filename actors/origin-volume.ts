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
import { SECTOR_BYTES } from '../io/units.js'
import { SnapcowError } from '../io/errors.js'
import { CompletedTable } from './completed-table.js'
import type { EngineOptions } from './engine.js'
import { Engine } from './engine.js'
import type { CoreEvent } from './events.js'
import type { CreateSnapshotOptions } from './snapshot-options.js'
import { checkCowDevice, checkSnapshotOptions } from './snapshot-options.js'
import { SnapshotCore } from './snapshot-core.js'
import { Snapshot } from './snapshot-volume.js'

/** Options of `openOrigin` (api.md). */
export type OpenOriginOptions = EngineOptions

/**
 * An origin volume and its snapshots.
 * @example
 * const origin = await openOrigin(await FileDevice.open('origin.img'))
 * const snap = await origin.createSnapshot(await FileDevice.open('cow.img', { create: true, size: 64 << 20 }))
 */
export class Origin extends DeviceBase {
  readonly #engine: Engine
  #snapshots: Snapshot[] = []
  #activations = 0

  /** @internal Use openOrigin(). */
  constructor(readonly device: BlockDevice, options: OpenOriginOptions = {}) {
    super(device.size, { flush: true, persistent: device.supports?.persistent ?? false })
    this.#engine = new Engine(device, options)
  }

  /** Active snapshots, in the order they were made. */
  get snapshots(): readonly Snapshot[] {
    return this.#snapshots
  }

  /** Completions as the core saw them (copy-done, commit-done, read-drained). */
  get events$(): Observable<CoreEvent> {
    return this.#engine.events$
  }

  /**
   * Makes a new snapshot on `cow` and activates it (no origin write is in flight at that
   * instant). A persistent store is durable on the COW device when this resolves. Refuses a
   * COW that already holds a snapshot store (use loadSnapshot) rather than overwrite it.
   */
  async createSnapshot(cow: BlockDevice, options: CreateSnapshotOptions = {}): Promise<Snapshot> {
    this.#checkOpen()
    this.#checkCow(cow)
    const checked = checkSnapshotOptions(options)
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
    return this.#attach(cow, store, new CompletedTable(), checked.overflow)
  }

  /**
   * Opens a persistent store written earlier, by snapcow or by Linux, and activates it.
   * Rejects a device with no store (magic 0), a foreign one, or a corrupt one, writing nothing.
   */
  async loadSnapshot(cow: BlockDevice, options: { overflow?: boolean } = {}): Promise<Snapshot> {
    this.#checkOpen()
    this.#checkCow(cow)
    if (options.overflow !== undefined && typeof options.overflow !== 'boolean') {
      throw new TypeError(`overflow must be a boolean, got ${String(options.overflow)}`)
    }
    const table = new CompletedTable()
    const store = await PersistentStore.load(cow, { onException: (o, n) => table.set(o, n) }) // row 20
    return this.#attach(cow, store, table, options.overflow === true)
  }

  async #attach(cow: BlockDevice, store: ExceptionStore, table: CompletedTable, overflow: boolean): Promise<Snapshot> {
    const n = ++this.#activations
    const core = new SnapshotCore(`snap-${n}`, cow, store, store.chunkSectors, overflow, n, table)
    await this.#engine.activate(core)
    const snapshot = new Snapshot(this.#engine, core, this.size, (gone) => {
      this.#snapshots = this.#snapshots.filter((s) => s !== gone)
    })
    this.#snapshots = [...this.#snapshots, snapshot]
    return snapshot
  }

  protected override _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    return this.#engine.readOrigin(offset, into) // spec §5.1 (straight to the device), or §12 while merging
  }

  protected override _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    return this.#engine.writeOrigin(offset, data)
  }

  protected override _flush(): Promise<void> {
    return this.device.flush()
  }

  /** Drops every snapshot (their stores stay valid); the devices stay open: the caller owns them. */
  protected override async _close(): Promise<void> {
    await Promise.all(this.#snapshots.map((s) => s.close()))
  }

  /** Spec §15: the COW is neither the origin (device or volume), nor one of its snapshots, nor another's COW. */
  #checkCow(cow: BlockDevice): void {
    if (cow === this) throw new TypeError('the COW device is the origin volume itself: a snapshot needs a device of its own')
    if ((this.#snapshots as readonly BlockDevice[]).includes(cow)) {
      throw new TypeError('the COW device is a snapshot of this same origin: a snapshot needs a device of its own')
    }
    checkCowDevice(cow, this.device, this.#engine.snapshots.map((s) => s.cow))
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
 * Opens an origin volume on a device. The engine never closes a device it was given.
 * @example
 * const origin = await openOrigin(new MemoryDevice(16 << 20))
 */
export async function openOrigin(device: BlockDevice, options: OpenOriginOptions = {}): Promise<Origin> {
  if (typeof device !== 'object' || device === null || typeof device.read !== 'function') {
    throw new TypeError(`openOrigin needs a BlockDevice, got ${String(device)}`)
  }
  return new Origin(device, options)
}
