// index.ts: snapcow's public entry (api.md). An explicit, grouped list: no `export *`.

// Origin and snapshots
export { openOrigin, Origin } from './actors/origin-volume.js'
export type { LoadSnapshotOptions, OpenOriginOptions } from './actors/origin-volume.js'
export type { EngineOptions, InspectionObserver } from './actors/engine.js'
export { Snapshot } from './actors/snapshot-volume.js'
export type { SnapshotStatus } from './actors/status.js'
export type { CreateSnapshotOptions } from './actors/snapshot-options.js'
export type { CoreEvent } from './actors/events.js'

// Journal and replay (docs/events.md)
export { Journal } from './actors/journal/journal.js'
export type { JournalEntry } from './actors/journal/journal.js'
export { readJournal } from './actors/journal/read-journal.js'
export { replay, ReplayDivergenceError } from './actors/journal/replay.js'
export type { ReplayOptions } from './actors/journal/replay.js'
export { ReplayedDeviceError } from './actors/journal/replayed-device-error.js'
export type { JournalIfExists } from './actors/journal/journal-file.js'
export type { MergeOptions } from './actors/merger.js'

// Chunk machine (XState v5)
export { chunkMachine } from './machines/chunk.js'
export type { ChunkCommand, ChunkContext, ChunkEvent, ChunkInput, ChunkStateName, HeldBio } from './machines/chunk.js'
// Its two executors behind one seam: the table compiled from the machine, and XState actors
export { compiledRuntime } from './machines/compiled-runtime.js'
export { xstateRuntime } from './machines/chunk-run.js'
export type { ChunkInspector, ChunkRun, ChunkRuntime } from './machines/chunk-run.js'

// Devices
export type { BlockDevice, DeviceSupports } from './io/block-device.js'
export { DeviceBase } from './io/device-base.js'
export type { DeviceBaseOptions } from './io/device-base.js'
export { MemoryDevice } from './io/memory-device.js'
export { FileDevice } from './io/file-device.js'
export type { FileDeviceOptions } from './io/file-device.js'

// Store format (Linux dm-snapshot's persistent COW, spec §9)
export { readCowStore } from './io/cow-format/read-cow-store.js'
export type { CowStoreInfo, ReadCowStoreOptions } from './io/cow-format/read-cow-store.js'
export { PersistentStore } from './io/cow-format/persistent-store.js'
export type { MergeRun } from './io/cow-format/persistent-store.js'
export type { LoadStoreOptions } from './io/cow-format/load-store.js'
export { TransientStore } from './io/cow-format/transient-store.js'
export type { ExceptionStore, StoreUsage } from './io/exception-store.js'
export { cowGeometry } from './io/cow-format/geometry.js'
export type { CowGeometry } from './io/cow-format/geometry.js'
export { isLegalChunkSectors, MAX_CHUNK_SECTORS } from './io/cow-format/chunk-size.js'

// Units
export { SECTOR_BYTES, asChunkSectors, asNewChunk, asOldChunk, asSector } from './io/units.js'
export type { ByteOffset, ChunkSectors, NewChunk, OldChunk, Sector } from './io/units.js'

// Errors
export { CowFormatError, SnapcowError } from './io/errors.js'
export type { CowFormatLocation, SnapcowErrorCode } from './io/errors.js'
