// The compiled chunk runtime is XState's chunk machine, step for step: both run along every
// edge-covering xstate/graph path and 10,000 random event sequences, and after every event
// their leaf state, context and emitted commands must be equal. A table compiled with one guard
// or action swapped must be caught by the same check.
import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import { getShortestPaths, getSimplePaths } from 'xstate/graph'
import { describe, expect, test } from 'vitest'
import { asNewChunk, asOldChunk } from '../../io/units.js'
import type { ChunkCommand, ChunkEvent } from '../../machines/chunk.js'
import { chunkMachine } from '../../machines/chunk.js'
import { commands } from '../../machines/chunk-logic.js'
import type { ChunkRuntime } from '../../machines/chunk-run.js'
import { xstateRuntime } from '../../machines/chunk-run.js'
import type { CompileFaults } from '../../machines/compile-machine.js'
import { compileMachine } from '../../machines/compile-machine.js'
import { chunkTable, compiledRuntime, compiledRuntimeOf } from '../../machines/compiled-runtime.js'

const input = { snapshotId: 'eq', oldChunk: asOldChunk(6) }
const bio = { id: 1 }
const alphabet: ChunkEvent[] = [
  { type: 'origin-write', bio, newChunk: asNewChunk(2) },
  { type: 'origin-write', newChunk: asNewChunk(2) }, // another snapshot holds the bio
  { type: 'origin-write', bio }, // no room
  { type: 'origin-write' },
  { type: 'snapshot-write', bio, newChunk: asNewChunk(2), wholeChunk: true, overflowAllowed: false },
  { type: 'snapshot-write', bio, newChunk: asNewChunk(2), wholeChunk: false, overflowAllowed: false },
  { type: 'snapshot-write', bio, wholeChunk: false, overflowAllowed: true },
  { type: 'snapshot-write', bio, wholeChunk: true, overflowAllowed: false },
  { type: 'copy-done', ok: true },
  { type: 'copy-done', ok: false },
  { type: 'commit-done', ok: true, readers: 0 },
  { type: 'commit-done', ok: true, readers: 2 },
  { type: 'commit-done', ok: false, readers: 0 },
  { type: 'read-drained' },
]
const eventKey = (e: ChunkEvent) => JSON.stringify(e)
const graphOptions = {
  input,
  events: alphabet,
  serializeState: (s: { value: unknown; context: unknown }) => JSON.stringify([s.value, s.context]),
  serializeEvent: eventKey,
}

/** Simple paths, plus the shortest path to every reachable state followed by each event. */
function edgeCoveringPaths(): ChunkEvent[][] {
  const strip = (steps: Array<{ event: { type: string } }>) =>
    steps.map((s) => s.event as ChunkEvent).filter((e) => (e.type as string) !== 'xstate.init')
  const paths = getSimplePaths(chunkMachine, graphOptions as never).map((p) => strip(p.steps))
  for (const p of getShortestPaths(chunkMachine, graphOptions as never)) {
    for (const e of alphabet) paths.push([...strip(p.steps), e])
  }
  return paths.filter((p) => p.length > 0)
}

const observe = (run: ReturnType<ChunkRuntime>) => {
  const { newChunk, readers, copyOk } = run.context()
  return { leaf: run.leaf, state: run.state, newChunk, readers, copyOk }
}

/** Drives both runtimes with `events`; returns the first difference, described, or undefined. */
function firstMismatch(events: ChunkEvent[], compiled: ChunkRuntime, reference: ChunkRuntime = xstateRuntime(),
  visit: (leaf: string) => void = () => undefined): string | undefined {
  const a = reference(input)
  const b = compiled(input)
  try {
    if (!isDeepStrictEqual(observe(a), observe(b))) return `initially: ${JSON.stringify([observe(a), observe(b)])}`
    for (const [i, e] of events.entries()) {
      const outA: ChunkCommand[] = []
      const outB: ChunkCommand[] = []
      a.send(e, outA)
      b.send(e, outB)
      const [sa, sb] = [observe(a), observe(b)]
      if (!isDeepStrictEqual(sa, sb) || !isDeepStrictEqual(outA, outB)) {
        return `step ${i} ${eventKey(e)}: xstate ${JSON.stringify([sa, outA])} compiled ${JSON.stringify([sb, outB])}`
      }
      visit(sa.leaf)
    }
    return undefined
  } finally {
    a.stop()
    b.stop()
  }
}

const paths = edgeCoveringPaths()

const write = fc.record({
  bio: fc.option(fc.record({ id: fc.nat(9) }), { nil: undefined }),
  newChunk: fc.option(fc.nat(1000).map(asNewChunk), { nil: undefined }),
}, { requiredKeys: [] })
// `ok` is mostly true and the lifecycle's own events come often, so most sequences get past
// Pending (about one in ten reaches CompletedWithReaders or Completed); the rest try everything else.
const ok = fc.constantFrom(true, true, true, false)
const eventArb: fc.Arbitrary<ChunkEvent> = fc.oneof(
  { weight: 2, arbitrary: write.map((w) => ({ type: 'origin-write' as const, ...w })) },
  {
    weight: 2,
    arbitrary: fc.record({
      bio: fc.record({ id: fc.nat(9) }),
      newChunk: fc.option(fc.nat(1000).map(asNewChunk), { nil: undefined }),
      wholeChunk: fc.boolean(),
      overflowAllowed: fc.boolean(),
    }, { requiredKeys: ['bio', 'wholeChunk', 'overflowAllowed'] }).map((w) => ({ type: 'snapshot-write' as const, ...w })),
  },
  { weight: 2, arbitrary: ok.map((ok) => ({ type: 'copy-done' as const, ok })) },
  { weight: 2, arbitrary: fc.record({ ok, readers: fc.nat(3) }).map((r) => ({ type: 'commit-done' as const, ...r })) },
  { weight: 1, arbitrary: fc.constant({ type: 'read-drained' as const }) },
)
const sequenceArb = fc.array(eventArb, { minLength: 1, maxLength: 12 })

describe('compiled runtime against XState', () => {
  test('the paths take every transition of the machine, eventless ones included', () => {
    const taken = new Set<unknown>()
    const inspecting = xstateRuntime({
      inspect: (e) => {
        if (e.type === '@xstate.microstep') for (const t of (e as unknown as { _transitions: unknown[] })._transitions) taken.add(t)
      },
    })
    for (const events of paths) {
      const run = inspecting(input)
      for (const e of events) run.send(e, [])
      run.stop()
    }
    const root = chunkMachine.root as unknown as { states: Record<string, unknown> }
    const all: unknown[] = []
    const walk = (n: { transitions: Map<string, unknown[]>; always?: unknown[]; states: Record<string, unknown> }) => {
      for (const ts of n.transitions.values()) all.push(...ts)
      all.push(...(n.always ?? []))
      Object.values(n.states).forEach((c) => walk(c as never))
    }
    walk(root as never)
    expect(all.length).toBe(15)
    expect(all.filter((t) => !taken.has(t)).map((t) => (t as { eventType: string }).eventType)).toEqual([])
  })

  test('agree after every step of every edge-covering path', () => {
    const compiled = compiledRuntime()
    const mismatches = paths.map((events) => firstMismatch(events, compiled)).filter((m) => m !== undefined)
    expect(mismatches).toEqual([])
    expect(paths.length).toBeGreaterThan(20)
  })

  test('agree after every step of 10,000 random event sequences', () => {
    const compiled = compiledRuntime()
    const reference = xstateRuntime()
    const reached = new Map<string, number>()
    fc.assert(fc.property(sequenceArb, (events) => {
      const leaves = new Set<string>()
      const mismatch = firstMismatch(events, compiled, reference, (leaf) => leaves.add(leaf))
      if (mismatch !== undefined) throw new Error(mismatch)
      for (const leaf of leaves) reached.set(leaf, (reached.get(leaf) ?? 0) + 1)
    }), { numRuns: 10_000 })
    // Every leaf state is visited by a good share of the sequences (not just None and Pending).
    for (const leaf of chunkTable.paths.map((p) => p.join('.'))) expect(reached.get(leaf) ?? 0, leaf).toBeGreaterThan(500)
  })

  const broken = (faults: CompileFaults) => compiledRuntimeOf(compileMachine(chunkMachine, faults))
  test.each([
    ['guard noReaders always true', { replace: { guards: { noReaders: () => true } } }],
    ['guard committed ignores copyOk', { replace: { guards: { committed: (_c: never, e: ChunkEvent) => e.type === 'commit-done' && e.ok } } }],
    ['action countReaders does nothing', { replace: { actions: { countReaders: () => undefined } } }],
    ['action release emits fail-held', { replace: { actions: { release: commands.failHeld } } }],
  ] as Array<[string, CompileFaults]>)('catches a table with %s', (_name, faults) => {
    const found = paths.map((events) => firstMismatch(events, broken(faults))).find((m) => m !== undefined)
    expect(found).toMatch(/^step \d+ .*: xstate .* compiled /)
    const random = fc.check(fc.property(sequenceArb, (events) => firstMismatch(events, broken(faults)) === undefined), { numRuns: 2000 })
    expect(random.failed).toBe(true)
  })

  test('the default table is the chunk machine compiled', () => {
    expect(chunkTable.leaves).toEqual(['chunk.None', 'chunk.Pending.copying', 'chunk.Pending.committing', 'chunk.CompletedWithReaders', 'chunk.Completed'])
    expect(chunkTable.events).toEqual(['origin-write', 'snapshot-write', 'copy-done', 'commit-done', 'read-drained'])
  })

  test('a stopped compiled run refuses events and its slot is reused', () => {
    const runtime = compiledRuntime()
    const first = runtime(input)
    first.send({ type: 'origin-write', newChunk: asNewChunk(3) }, [])
    first.stop()
    expect(() => first.send({ type: 'copy-done', ok: true }, [])).toThrow(/chunk 6 of eq was stopped/)
    const second = runtime(input)
    expect(observe(second)).toEqual({ leaf: 'None', state: 'None', newChunk: undefined, readers: 0, copyOk: false })
  })
})
