// machines/chunk-run.ts: the one seam between the engine and a chunk machine executor (style.md
// §4): send an event, get the emitted commands back in order. This file holds the seam and its
// XState implementation (real actors, inspectable); compiled-runtime.ts holds the table one. Pure.
import type { InspectionEvent, Observer } from 'xstate'
import { createActor } from 'xstate'
import type { ChunkCommand, ChunkContext, ChunkEvent, ChunkInput, ChunkStateName } from './chunk.js'
import { chunkMachine, chunkStateName } from './chunk.js'

/** One chunk's machine, behind whichever executor runs it. */
export interface ChunkRun {
  /** The top-level state, as `chunkState()` reports it. */
  readonly state: ChunkStateName
  /** The leaf state, dotted ('Pending.copying'): for journals and the equivalence tests. */
  readonly leaf: string
  /** Runs one event to quiescence; pushes the commands it emits onto `out`, in order. */
  send(event: ChunkEvent, out: ChunkCommand[]): void
  /** A copy of the machine's context now (allocates: not for the hot path). */
  context(): ChunkContext
  /** The chunk is Completed or back in None: stop the actor, or give the slot back. */
  stop(): void
}

/** Makes the run of one chunk, in state None, when the engine first needs it. */
export type ChunkRuntime = (input: ChunkInput) => ChunkRun

/** XState's `inspect` option: an observer of inspection events, or a function. */
export type ChunkInspector = Observer<InspectionEvent> | ((event: InspectionEvent) => void)

/** A leaf state as dotted path, from an XState state value. */
export const leafOf = (value: unknown): string => {
  if (typeof value === 'string') return value
  const [key, inner] = Object.entries(value as Record<string, unknown>)[0]!
  return `${key}.${leafOf(inner)}`
}

class XStateChunkRun implements ChunkRun {
  readonly #actor
  #out: ChunkCommand[] | undefined

  constructor(input: ChunkInput, inspect: ChunkInspector | undefined) {
    this.#actor = createActor(chunkMachine, {
      id: `${input.snapshotId}:${input.oldChunk}`, input, ...(inspect !== undefined ? { inspect } : {}),
    })
    this.#actor.on('*', (command) => {
      if (this.#out === undefined) throw new Error(`chunk ${input.oldChunk} of ${input.snapshotId} emitted ${command.type} outside send()`)
      this.#out.push(command)
    })
    this.#actor.start()
  }

  get state(): ChunkStateName {
    return chunkStateName(this.#actor.getSnapshot().value)
  }

  get leaf(): string {
    return leafOf(this.#actor.getSnapshot().value)
  }

  send(event: ChunkEvent, out: ChunkCommand[]): void {
    this.#out = out
    try {
      this.#actor.send(event)
    } finally {
      this.#out = undefined
    }
  }

  context(): ChunkContext {
    return { ...this.#actor.getSnapshot().context }
  }

  stop(): void {
    this.#actor.stop()
  }
}

/**
 * Runs each chunk as a real XState actor: about 170 µs a lifecycle, but inspectable.
 * @example
 * const run = xstateRuntime({ inspect: (e) => console.log(e.type) })({ snapshotId: 's1', oldChunk: asOldChunk(5) })
 * const out: ChunkCommand[] = []
 * run.send({ type: 'origin-write', newChunk: asNewChunk(2) }, out) // out: [{ type: 'copy', … }]
 */
export function xstateRuntime(options: { inspect?: ChunkInspector } = {}): ChunkRuntime {
  return (input) => new XStateChunkRun(input, options.inspect)
}
