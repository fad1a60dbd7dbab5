// machines/chunk.ts: the lifecycle of one exception of one snapshot (spec §3, §4; kernel
// commit 65fc7c37's states A–D). Pure: it only assigns and emits commands; the engine
// (actors/) does the I/O and answers with events. Rows cite the table of spec §4. Guards and
// actions are the plain functions of chunk-logic.ts; compile-machine.ts runs them from a table.
import { and, assign, emit, setup } from 'xstate'
import type { NewChunk, OldChunk } from '../io/units.js'
import type { LogicAssign, LogicEmit, LogicGuard } from './bound-logic.js'
import { bindLogic } from './bound-logic.js'
import { assigns, commands, guards } from './chunk-logic.js'

/** The four states, as `chunkState()` reports them (Pending's substates are not told apart). */
export type ChunkStateName = 'None' | 'Pending' | 'CompletedWithReaders' | 'Completed'

/** The top-level state of a chunk machine snapshot value. */
export const chunkStateName = (value: unknown): ChunkStateName =>
  (typeof value === 'string' ? value : Object.keys(value as object)[0]) as ChunkStateName

/** What the machine is given when the engine creates it (lazily, on a chunk's first write). */
export interface ChunkInput {
  snapshotId: string
  oldChunk: OldChunk
}

export interface ChunkContext extends ChunkInput {
  /** The COW chunk, once allocated (0 before: chunk 0 is never a persistent data chunk). */
  newChunk: NewChunk | undefined
  /** Snapshot reads still in flight to the origin for this chunk, when the commit finished. */
  readers: number
  /** Whether the copy (or the full-chunk write) succeeded. */
  copyOk: boolean
}

/** An opaque request the machine may hold; the engine owns it. */
export type HeldBio = { readonly id: number }

/**
 * Events. `newChunk` on a write in None is the engine's allocation (undefined: no room).
 * `ok` on commit-done is false when the copy, the commit or the snapshot failed.
 */
export type ChunkEvent =
  | { type: 'origin-write'; bio?: HeldBio; newChunk?: NewChunk }
  | { type: 'snapshot-write'; bio: HeldBio; newChunk?: NewChunk; wholeChunk: boolean; overflowAllowed: boolean }
  | { type: 'copy-done'; ok: boolean }
  | { type: 'commit-done'; ok: boolean; readers: number }
  | { type: 'read-drained' }

/** Commands the machine emits; the engine carries each one out. */
export type ChunkCommand =
  | { type: 'copy'; oldChunk: OldChunk; newChunk: NewChunk }
  | { type: 'write-full'; bio: HeldBio; newChunk: NewChunk }
  | { type: 'hold-origin-write'; bio: HeldBio }
  | { type: 'hold-snapshot-write'; bio: HeldBio }
  | { type: 'commit'; oldChunk: OldChunk; newChunk: NewChunk; copyOk: boolean }
  | { type: 'insert-completed'; oldChunk: OldChunk; newChunk: NewChunk }
  | { type: 'remove-pending'; oldChunk: OldChunk }
  /** The commit succeeded: acknowledge the full-chunk write, submit held snapshot writes, re-run held origin writes. */
  | { type: 'release'; oldChunk: OldChunk; newChunk: NewChunk }
  /** The copy or commit failed: fail the full-chunk write and held snapshot writes; re-run held origin writes. */
  | { type: 'fail-held'; oldChunk: OldChunk }
  | { type: 'invalidate'; reason: string }
  | { type: 'overflow' }

type Args = { context: ChunkContext; event: ChunkEvent }
/** Each guard and action wraps one function of chunk-logic.ts, bound so the compiler finds it. */
const guard = (fn: LogicGuard<ChunkContext, ChunkEvent>) =>
  bindLogic(({ context, event }: Args) => fn(context, event), { kind: 'guard', fn })
const command = (fn: LogicEmit<ChunkContext, ChunkEvent, ChunkCommand>) =>
  bindLogic(emit<ChunkContext, ChunkEvent, undefined, ChunkEvent, ChunkCommand>(({ context, event }) => fn(context, event)),
    { kind: 'emit', fn })
const update = (fn: LogicAssign<ChunkContext, ChunkEvent>) =>
  bindLogic(assign<ChunkContext, ChunkEvent, undefined, ChunkEvent, never>(({ context, event }) => {
    const next = { ...context }
    fn(next, event)
    return next
  }), { kind: 'assign', fn })

/**
 * The chunk machine. Created by the engine when a chunk leaves None; stopped when it is
 * Completed (the exception is then a table entry) or back in None (it failed).
 * @example
 * const actor = createActor(chunkMachine, { input: { snapshotId: 's1', oldChunk: asOldChunk(5) } })
 * actor.on('*', (command) => engine.carryOut(command))
 * actor.start().send({ type: 'origin-write', newChunk: asNewChunk(2) })
 */
export const chunkMachine = setup({
  types: {} as { context: ChunkContext; input: ChunkInput; events: ChunkEvent; emitted: ChunkCommand },
  guards: {
    allocated: guard(guards.allocated),
    wholeChunk: guard(guards.wholeChunk),
    overflowAllowed: guard(guards.overflowAllowed),
    committed: guard(guards.committed),
    noReaders: guard(guards.noReaders),
    holdsBio: guard(guards.holdsBio),
  },
  actions: {
    allocate: update(assigns.allocate),
    copy: command(commands.copy),
    writeFull: command(commands.writeFull),
    holdOriginWrite: command(commands.holdOriginWrite),
    holdSnapshotWrite: command(commands.holdSnapshotWrite),
    commit: command(commands.commit),
    recordCopy: update(assigns.recordCopy),
    countReaders: update(assigns.countReaders),
    insertCompleted: command(commands.insertCompleted),
    removePending: command(commands.removePending),
    release: command(commands.release),
    failHeld: command(commands.failHeld),
    invalidateNoRoom: command(commands.invalidateNoRoom),
    invalidateFailed: command(commands.invalidateFailed),
    overflow: command(commands.overflow),
  },
}).createMachine({
  id: 'chunk',
  initial: 'None',
  context: ({ input }) => ({ ...input, newChunk: undefined, readers: 0, copyOk: false }),
  states: {
    None: {
      on: {
        'origin-write': [
          // row 1: the write waits here unless another snapshot already holds it (then no bio)
          { guard: and(['allocated', 'holdsBio']), target: 'Pending', actions: ['allocate', 'holdOriginWrite', 'copy'] },
          { guard: 'allocated', target: 'Pending', actions: ['allocate', 'copy'] },
          { actions: 'invalidateNoRoom' }, // row 2
        ],
        'snapshot-write': [
          { guard: and(['allocated', 'wholeChunk']), target: 'Pending', actions: ['allocate', 'writeFull'] }, // row 3
          { guard: 'allocated', target: 'Pending', actions: ['allocate', 'holdSnapshotWrite', 'copy'] }, // row 4
          { guard: 'overflowAllowed', actions: 'overflow' }, // row 5, store PO
          { actions: 'invalidateNoRoom' }, // row 5
        ],
      },
    },
    Pending: {
      initial: 'copying',
      on: {
        'origin-write': { guard: 'holdsBio', actions: 'holdOriginWrite' }, // row 7
        'snapshot-write': { actions: 'holdSnapshotWrite' }, // row 8
      },
      states: {
        copying: {
          on: { 'copy-done': { target: 'committing', actions: ['recordCopy', 'commit'] } }, // row 9: the engine commits in allocation order
        },
        committing: {
          on: {
            'commit-done': [
              { guard: 'committed', target: '#chunk.CompletedWithReaders', actions: ['countReaders', 'insertCompleted'] }, // row 10
              { target: '#chunk.None', actions: ['invalidateFailed', 'removePending', 'failHeld'] }, // row 13
            ],
          },
        },
      },
    },
    CompletedWithReaders: {
      always: { guard: 'noReaders', target: 'Completed' }, // row 11
      on: {
        'read-drained': { target: 'Completed' }, // row 12
        'origin-write': { guard: 'holdsBio', actions: 'holdOriginWrite' }, // row 15
      },
    },
    Completed: {
      entry: ['removePending', 'release'], // row 12: the exception is now only a table entry
    },
  },
})
