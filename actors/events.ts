// actors/events.ts: what the shell actors report back to the core (architecture rule 1: a
// completion becomes an event, never a mutation). They travel on one RxJS Subject.
import type { OldChunk } from '../io/units.js'

export type CoreEvent =
  | { type: 'copy-done'; snapshotId: string; oldChunk: OldChunk; ok: boolean }
  | { type: 'commit-done'; snapshotId: string; oldChunk: OldChunk; ok: boolean }
  | { type: 'read-drained'; snapshotId: string; oldChunk: OldChunk }
