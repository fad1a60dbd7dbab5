// machines/chunk-logic.ts: the chunk machine's guards, command builders and context updates as
// plain functions of (context, event). machines/chunk.ts wraps them for XState's setup(); the
// compiled executor (compile-machine.ts) binds the same functions by name. Pure.
import type { HeldBio, ChunkCommand, ChunkContext, ChunkEvent } from './chunk.js'
import type { NewChunk } from '../io/units.js'

const allocatedChunk = (c: ChunkContext): NewChunk => {
  if (c.newChunk === undefined) throw new Error(`chunk ${c.oldChunk} of ${c.snapshotId} has no COW chunk`)
  return c.newChunk
}

/** The bio a write event carries (the transitions that hold one only fire on writes that have one). */
const heldBio = (event: ChunkEvent): HeldBio => {
  if ((event.type === 'origin-write' || event.type === 'snapshot-write') && event.bio !== undefined) return event.bio
  throw new Error(`a ${event.type} event holds no bio`)
}

export const guards = {
  allocated: (_c: ChunkContext, event: ChunkEvent): boolean => 'newChunk' in event && event.newChunk !== undefined,
  wholeChunk: (_c: ChunkContext, event: ChunkEvent): boolean => event.type === 'snapshot-write' && event.wholeChunk,
  overflowAllowed: (_c: ChunkContext, event: ChunkEvent): boolean => event.type === 'snapshot-write' && event.overflowAllowed,
  committed: (c: ChunkContext, event: ChunkEvent): boolean => event.type === 'commit-done' && event.ok && c.copyOk,
  noReaders: (c: ChunkContext): boolean => c.readers === 0,
  holdsBio: (_c: ChunkContext, event: ChunkEvent): boolean => 'bio' in event && event.bio !== undefined,
}

/** Context updates: each mutates the record it is given (never shared: XState's wrapper copies). */
export const assigns = {
  allocate(c: ChunkContext, event: ChunkEvent): void {
    c.newChunk = 'newChunk' in event ? event.newChunk : undefined
    c.copyOk = false
    c.readers = 0
  },
  recordCopy(c: ChunkContext, event: ChunkEvent): void {
    c.copyOk = event.type === 'copy-done' && event.ok
  },
  countReaders(c: ChunkContext, event: ChunkEvent): void {
    c.readers = event.type === 'commit-done' ? event.readers : 0
  },
}

const NO_ROOM: ChunkCommand = Object.freeze({ type: 'invalidate', reason: 'Unable to allocate exception.' })
const IO_FAILED: ChunkCommand = Object.freeze({ type: 'invalidate', reason: 'Error reading/writing.' })
const OVERFLOW: ChunkCommand = Object.freeze({ type: 'overflow' })

/** Command builders: what each emit action emits. */
export const commands = {
  copy: (c: ChunkContext): ChunkCommand => ({ type: 'copy', oldChunk: c.oldChunk, newChunk: allocatedChunk(c) }),
  writeFull: (c: ChunkContext, event: ChunkEvent): ChunkCommand =>
    ({ type: 'write-full', bio: heldBio(event), newChunk: allocatedChunk(c) }),
  holdOriginWrite: (_c: ChunkContext, event: ChunkEvent): ChunkCommand => ({ type: 'hold-origin-write', bio: heldBio(event) }),
  holdSnapshotWrite: (_c: ChunkContext, event: ChunkEvent): ChunkCommand => ({ type: 'hold-snapshot-write', bio: heldBio(event) }),
  commit: (c: ChunkContext, event: ChunkEvent): ChunkCommand => ({
    type: 'commit', oldChunk: c.oldChunk, newChunk: allocatedChunk(c), copyOk: event.type === 'copy-done' && event.ok,
  }),
  insertCompleted: (c: ChunkContext): ChunkCommand => ({ type: 'insert-completed', oldChunk: c.oldChunk, newChunk: allocatedChunk(c) }),
  removePending: (c: ChunkContext): ChunkCommand => ({ type: 'remove-pending', oldChunk: c.oldChunk }),
  release: (c: ChunkContext): ChunkCommand => ({ type: 'release', oldChunk: c.oldChunk, newChunk: allocatedChunk(c) }),
  failHeld: (c: ChunkContext): ChunkCommand => ({ type: 'fail-held', oldChunk: c.oldChunk }),
  invalidateNoRoom: (): ChunkCommand => NO_ROOM,
  invalidateFailed: (): ChunkCommand => IO_FAILED,
  overflow: (): ChunkCommand => OVERFLOW,
}
