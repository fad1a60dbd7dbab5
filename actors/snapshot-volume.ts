// actors/snapshot-volume.ts: a snapshot as a BlockDevice (architecture rule 6). The volume
// checks every request (DeviceBase) and hands whole requests to the engine, which splits them
// at the snapshot's chunk boundaries (spec §5.6).
import { DeviceBase } from '../io/device-base.js'
import { SnapcowError } from '../io/errors.js'
import type { ByteOffset } from '../io/units.js'
import { asOldChunk, SECTOR_BYTES } from '../io/units.js'
import type { ChunkStateName } from '../machines/chunk.js'
import type { Engine } from './engine.js'
import type { SnapshotCore } from './snapshot-core.js'
import type { SnapshotStatus } from './status.js'
import { snapshotStatus } from './status.js'

/**
 * A snapshot of an origin: reads show the origin as it was when the snapshot was created,
 * plus the snapshot's own writes. Made by `origin.createSnapshot()` or `origin.loadSnapshot()`.
 * @example
 * const snap = await origin.createSnapshot(cow, { chunkSize: 4096 })
 * await origin.write(0, newData)      // the old data is copied to `cow` first
 * await snap.read(0, buffer)          // the old data
 */
export class Snapshot extends DeviceBase {
  readonly id: string
  /** Chunk size in bytes. */
  readonly chunkSize: number
  #dropping: Promise<void> | undefined

  /** @internal */
  constructor(private readonly engine: Engine, private readonly core: SnapshotCore, size: number,
    private readonly onDetached: (snapshot: Snapshot) => void) {
    super(size, { flush: true, persistent: false })
    this.id = core.id
    this.chunkSize = core.chunkBytes
  }

  /** The state and the `dmsetup status` line (spec §14). */
  status(): SnapshotStatus {
    return snapshotStatus(this.core, this.size / SECTOR_BYTES)
  }

  /** The exception state of one chunk (in this snapshot's chunk units). */
  chunkState(chunk: number): ChunkStateName {
    if (!Number.isSafeInteger(chunk) || chunk < 0 || chunk * this.chunkSize >= this.size) {
      throw new RangeError(`chunk ${String(chunk)} is not a chunk of this ${this.size}-byte snapshot`)
    }
    return this.core.stateOf(asOldChunk(chunk))
  }

  /**
   * Detaches the snapshot without merging: new I/O to it rejects, what is in flight finishes,
   * then later origin writes no longer copy for it. Its COW device keeps a valid store that
   * `loadSnapshot` can open again. The COW device is not closed.
   */
  drop(): Promise<void> {
    this.#dropping ??= (async () => {
      await this.core.whenQuiet()
      this.engine.detach(this.core)
      this.onDetached(this)
    })()
    return this.#dropping
  }

  protected override async _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    this.#checkAttached()
    this.core.ioInFlight++
    try {
      await this.engine.readSnapshot(this.core, offset, into)
    } finally {
      this.core.ioInFlight--
      this.core.settled()
    }
  }

  protected override async _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    this.#checkAttached()
    this.core.ioInFlight++
    try {
      await this.engine.writeSnapshot(this.core, offset, data)
    } finally {
      this.core.ioInFlight--
      this.core.settled()
    }
  }

  /** Spec §5.5: a flush of a snapshot goes to its COW device. */
  protected override _flush(): Promise<void> {
    return this.core.cow.flush()
  }

  /** Closing a snapshot volume drops it (see drop()). */
  protected override _close(): Promise<void> {
    return this.drop()
  }

  #checkAttached(): void {
    if (this.#dropping !== undefined) {
      throw new SnapcowError('SNAPCOW_DETACHED', `snapshot ${this.id} has been dropped: its reads and writes fail`)
    }
  }
}
