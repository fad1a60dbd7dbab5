// io/cow-format/transient-store.ts: the kernel's transient store ('N', spec §10): nothing on
// disk, data chunks from COW chunk 0, commits complete at once with the copy's outcome.
import type { BlockDevice } from '../block-device.js'
import type { ExceptionStore, StoreUsage } from '../exception-store.js'
import type { ChunkSectors, NewChunk, OldChunk } from '../units.js'
import { asNewChunk, asSector, bytesToSectors } from '../units.js'
import { chunkSectorsProblem } from './chunk-size.js'

/**
 * A transient ('N') store: exceptions live in memory only.
 * @example
 * const store = new TransientStore(cowDevice, asChunkSectors(8))
 * store.allocate() // 0, then 1, 2, … while whole chunks fit
 */
export class TransientStore implements ExceptionStore {
  readonly kind = 'N' as const
  readonly device: BlockDevice
  readonly chunkSectors: ChunkSectors
  #valid = true
  /** Next free sector (the kernel counts in sectors). */
  #nextFreeSector = 0

  constructor(device: BlockDevice, chunkSectors: ChunkSectors) {
    const problem = chunkSectorsProblem(chunkSectors)
    if (problem !== undefined) throw new RangeError(`chunk size ${chunkSectors} sectors ${problem}`)
    this.device = device
    this.chunkSectors = chunkSectors
  }

  get valid(): boolean { return this.#valid }

  allocate(): NewChunk | undefined {
    const totalSectors = bytesToSectors(this.device.size)
    if (totalSectors < this.#nextFreeSector + this.chunkSectors) return undefined
    const chunk = asNewChunk(this.#nextFreeSector / this.chunkSectors)
    this.#nextFreeSector += this.chunkSectors
    return chunk
  }

  commit(_oldChunk: OldChunk, _newChunk: NewChunk, copyOk: boolean): Promise<boolean> {
    if (!copyOk) this.#valid = false
    return Promise.resolve(copyOk)
  }

  /** Nothing is on disk to mark. */
  invalidate(): Promise<void> {
    this.#valid = false
    return Promise.resolve()
  }

  /** A transient store writes no metadata: nothing is ever queued. */
  idle(): Promise<void> {
    return Promise.resolve()
  }

  usage(): StoreUsage {
    return {
      allocatedSectors: asSector(this.#nextFreeSector),
      totalSectors: bytesToSectors(this.device.size),
      metadataSectors: asSector(0),
    }
  }
}
