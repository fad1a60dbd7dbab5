// machines/compiled-runtime.ts: runs the compiled chunk machine (compile-machine.ts) over a pool
// of typed-array slots, one per live chunk: state, newChunk, readers, copyOk. A send loads the
// slot into one shared context record, runs stepTable() and stores it back: no allocation but
// the commands it emits. Pure.
import type { NewChunk, OldChunk } from '../io/units.js'
import type { ChunkCommand, ChunkContext, ChunkEvent, ChunkInput, ChunkStateName } from './chunk.js'
import { chunkMachine } from './chunk.js'
import type { ChunkRun, ChunkRuntime } from './chunk-run.js'
import type { CompiledMachine } from './compile-machine.js'
import { compileMachine, stepTable } from './compile-machine.js'

export type ChunkTable = CompiledMachine<ChunkContext, ChunkEvent, ChunkCommand>

const STATE_NAMES: ReadonlySet<string> = new Set<ChunkStateName>(['None', 'Pending', 'CompletedWithReaders', 'Completed'])

/**
 * The compiled runtime keeps exactly these context fields per slot; refuse a machine whose
 * initial context differs, so a new context field cannot be silently dropped.
 */
function checkContextLayout(): void {
  const factory = chunkMachine.config.context
  const probe = { snapshotId: 'probe', oldChunk: 7 as OldChunk }
  const initial = typeof factory === 'function' ? (factory as (a: { input: ChunkInput }) => unknown)({ input: probe }) : factory
  const expected = { ...probe, newChunk: undefined, readers: 0, copyOk: false }
  const got = JSON.stringify(initial, (_k, v: unknown) => (v === undefined ? '(undefined)' : v))
  if (got !== JSON.stringify(expected, (_k, v: unknown) => (v === undefined ? '(undefined)' : v))) {
    throw new TypeError(`compiled chunk runtime: the chunk machine's initial context ${got} is not the slot layout {snapshotId, oldChunk, newChunk, readers, copyOk}`)
  }
}

/** Per-chunk state in parallel typed arrays, indexed by slot; freed slots are reused. */
class Slots {
  state = new Int32Array(64)
  /** NaN: no COW chunk yet. */
  newChunk = new Float64Array(64)
  readers = new Float64Array(64)
  copyOk = new Uint8Array(64)
  #free = new Int32Array(64)
  #freeCount = 0
  #used = 0

  take(initial: number): number {
    const slot = this.#freeCount > 0 ? this.#free[--this.#freeCount]! : this.#used++
    if (slot >= this.state.length) this.#grow()
    this.state[slot] = initial
    this.newChunk[slot] = NaN
    this.readers[slot] = 0
    this.copyOk[slot] = 0
    return slot
  }

  give(slot: number): void {
    if (this.#freeCount === this.#free.length) {
      const free = new Int32Array(this.#free.length * 2)
      free.set(this.#free)
      this.#free = free
    }
    this.#free[this.#freeCount++] = slot
  }

  #grow(): void {
    const grow = <T extends Int32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(a.length * 2)
      b.set(a)
      return b
    }
    this.state = grow(this.state, (n) => new Int32Array(n))
    this.newChunk = grow(this.newChunk, (n) => new Float64Array(n))
    this.readers = grow(this.readers, (n) => new Float64Array(n))
    this.copyOk = grow(this.copyOk, (n) => new Uint8Array(n))
  }
}

/** The table executor: one per runtime, shared by every chunk it runs. */
export class CompiledChunkMachine {
  readonly slots = new Slots()
  readonly stateNames: readonly ChunkStateName[]
  readonly leaves: readonly string[]
  /** The one context record guards and actions see; loaded from and stored to a slot per send. */
  readonly #context: ChunkContext = { snapshotId: '', oldChunk: 0 as OldChunk, newChunk: undefined, readers: 0, copyOk: false }

  constructor(readonly table: ChunkTable) {
    for (const path of table.paths) {
      if (!STATE_NAMES.has(path[0]!)) throw new TypeError(`compiled chunk runtime: '${path.join('.')}' is not one of the chunk states`)
    }
    this.stateNames = table.paths.map((p) => p[0] as ChunkStateName)
    this.leaves = table.paths.map((p) => p.join('.'))
  }

  start(): number {
    return this.slots.take(this.table.initial)
  }

  send(slot: number, snapshotId: string, oldChunk: OldChunk, event: ChunkEvent, out: ChunkCommand[]): void {
    const s = this.slots
    const c = this.#context
    c.snapshotId = snapshotId
    c.oldChunk = oldChunk
    const nc = s.newChunk[slot]!
    c.newChunk = Number.isNaN(nc) ? undefined : nc as NewChunk
    c.readers = s.readers[slot]!
    c.copyOk = s.copyOk[slot] === 1
    const state = stepTable(this.table, s.state[slot]!, c, event, out)
    s.state[slot] = state
    s.newChunk[slot] = c.newChunk ?? NaN
    s.readers[slot] = c.readers
    s.copyOk[slot] = c.copyOk ? 1 : 0
  }

  context(slot: number, snapshotId: string, oldChunk: OldChunk): ChunkContext {
    const nc = this.slots.newChunk[slot]!
    return { snapshotId, oldChunk, newChunk: Number.isNaN(nc) ? undefined : nc as NewChunk,
      readers: this.slots.readers[slot]!, copyOk: this.slots.copyOk[slot] === 1 }
  }
}

/** A chunk's handle: its slot and the input the caller gave (kept here, not in the slot). */
class CompiledChunkRun implements ChunkRun {
  #slot: number

  constructor(readonly machine: CompiledChunkMachine, readonly snapshotId: string, readonly oldChunk: OldChunk) {
    this.#slot = machine.start()
  }

  get state(): ChunkStateName {
    return this.machine.stateNames[this.machine.slots.state[this.#live()]!]!
  }

  get leaf(): string {
    return this.machine.leaves[this.machine.slots.state[this.#live()]!]!
  }

  send(event: ChunkEvent, out: ChunkCommand[]): void {
    this.machine.send(this.#live(), this.snapshotId, this.oldChunk, event, out)
  }

  context(): ChunkContext {
    return this.machine.context(this.#live(), this.snapshotId, this.oldChunk)
  }

  stop(): void {
    if (this.#slot < 0) return
    this.machine.slots.give(this.#slot)
    this.#slot = -1
  }

  #live(): number {
    if (this.#slot < 0) throw new RangeError(`chunk ${this.oldChunk} of ${this.snapshotId} was stopped; its slot is free`)
    return this.#slot
  }
}

/** The chunk machine, compiled at load: an import fails, naming it, if the machine uses a feature the table lacks. */
export const chunkTable: ChunkTable = (checkContextLayout(), compileMachine(chunkMachine))

/**
 * Runs each chunk from the compiled table: well under a microsecond a lifecycle. Each runtime
 * has its own slot pool.
 * @example
 * const newRun = compiledRuntime()
 * const run = newRun({ snapshotId: 's1', oldChunk: asOldChunk(5) })
 * run.send({ type: 'origin-write', newChunk: asNewChunk(2) }, out)
 */
export function compiledRuntime(): ChunkRuntime {
  return compiledRuntimeOf(chunkTable)
}

/** @internal For tests: a runtime over another table (one compiled with a deliberate fault). */
export function compiledRuntimeOf(table: ChunkTable): ChunkRuntime {
  const machine = new CompiledChunkMachine(table)
  return (input) => new CompiledChunkRun(machine, input.snapshotId, input.oldChunk)
}
