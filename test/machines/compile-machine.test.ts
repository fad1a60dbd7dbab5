// The compiler on machines other than the chunk machine: it follows XState's microstep order
// (exits innermost first, transition actions, entries outermost first; reenter; `#id` targets;
// descent into initial states; eventless chains), and it refuses, by name, what it cannot run.
import { isDeepStrictEqual } from 'node:util'
import type { AnyStateMachine } from 'xstate'
import { assign, createActor, createMachine, emit, fromPromise, raise, setup, stateIn } from 'xstate'
import { describe, expect, test } from 'vitest'
import { bindLogic } from '../../machines/bound-logic.js'
import { compileMachine, stepTable } from '../../machines/compile-machine.js'

type Ctx = { n: number }
type Ev = { type: string }
type Out = { type: string; n: number }
// Emit and assign actions and guards, made the way chunk.ts makes them (bindLogic over xstate's own).
const say = (name: string) => bindLogic(emit(({ context }: { context: Ctx }) => ({ type: name, n: context.n })), {
  kind: 'emit', fn: (c: Ctx): Out => ({ type: name, n: c.n }),
})
const inc = bindLogic(assign(({ context }: { context: Ctx }) => ({ n: context.n + 1 })), {
  kind: 'assign', fn: (c: Ctx) => { c.n += 1 },
})
const small = bindLogic(({ context }: { context: Ctx }) => context.n < 3, { kind: 'guard', fn: (c: Ctx) => c.n < 3 })
const never = bindLogic(() => false, { kind: 'guard', fn: () => false })

const names = ['t', 'enA', 'exA', 'enA1', 'exA1', 'enA2', 'exA2', 'enB', 'exB', 'enB1', 'exB1', 'enB2', 'exB2'] as const
const actions = Object.fromEntries([...names.map((n) => [n, say(n)]), ['inc', inc]])

/** Nested states with entry and exit actions everywhere, and transitions of every shape. */
const nested = setup({ types: {} as { context: Ctx; events: Ev; emitted: Out }, actions: actions as never, guards: { small, never } as never })
  .createMachine({ // (string action names: the config is not typed against `actions` built from a list)
    id: 'm',
    initial: 'Idle',
    context: { n: 0 },
    states: {
      Idle: { on: { go: 'A', deep: '#m.A.A2', far: 'B' } },
      A: {
        entry: 'enA', exit: 'exA', initial: 'A1',
        on: {
          up: { target: 'B', actions: 't' },
          self: { target: 'A', reenter: true, actions: 't' },
          inner: { target: '.A2', actions: 't' },
          tick: { actions: ['inc', 't'] },
        },
        states: {
          A1: { entry: 'enA1', exit: 'exA1', on: { next: { target: 'A2', actions: 't' }, up: { guard: 'never', target: '#m.B' } } },
          A2: {
            entry: 'enA2', exit: 'exA2',
            on: { next: { target: '#m.B.B2', actions: 't' }, stay: { target: 'A2', actions: 't' }, again: { target: 'A2', reenter: true } },
          },
        },
      },
      B: {
        entry: 'enB', exit: 'exB', initial: 'B1',
        on: { back: 'A', tick: { actions: 'inc' } },
        states: {
          B1: { entry: ['enB1', 'inc'], exit: 'exB1', always: { guard: 'small', target: 'B2', actions: 't' } },
          B2: { entry: 'enB2', exit: 'exB2', always: { guard: 'small', target: 'B1', actions: 't' }, on: { out: '#m.Idle' } },
        },
      },
    },
  } as never) as unknown as AnyStateMachine

const leafOf = (value: unknown): string =>
  typeof value === 'string' ? value : Object.entries(value as object).map(([k, v]) => `${k}.${leafOf(v)}`)[0]!

/** XState's and the table's emitted actions, leaf and context after each event. */
function both(events: string[]): { xstate: unknown[]; table: unknown[] } {
  const actor = createActor(nested).start()
  let emitted: Out[] = []
  actor.on('*', (e) => { emitted.push(e as Out) })
  const table = compileMachine(nested)
  const context: Ctx = { n: 0 }
  let state = table.initial
  const xs: unknown[] = []
  const ts: unknown[] = []
  for (const type of events) {
    emitted = []
    actor.send({ type })
    xs.push([leafOf(actor.getSnapshot().value), actor.getSnapshot().context.n, emitted])
    const out: Out[] = []
    state = stepTable(table, state, context, { type }, out)
    ts.push([table.paths[state]!.join('.'), context.n, out])
  }
  actor.stop()
  return { xstate: xs, table: ts }
}

describe('the table follows XState', () => {
  test.each([
    ['into a compound state and its initial child', ['go']],
    ['between siblings, across parents, by #id', ['go', 'next', 'next']],
    ['a guarded child transition falls through to its parent', ['go', 'up']],
    ['reentering the parent from a child', ['go', 'next', 'self']],
    ['a relative child target, self targets with and without reenter', ['go', 'inner', 'stay', 'again']],
    ['targetless transitions with assign and emit', ['go', 'tick', 'tick']],
    ['a deep #id target enters its ancestors outermost first', ['deep', 'next']],
    ['eventless transitions chain until their guard fails', ['far', 'tick', 'out', 'far']],
    ['unknown events do nothing', ['nothing', 'go', 'nothing']],
  ])('%s', (_name, events) => {
    const { xstate, table } = both(events)
    expect(table).toEqual(xstate)
    expect(isDeepStrictEqual(xstate, [])).toBe(false)
  })

  test('entry, exit and transition actions come in microstep order', () => {
    const { table } = both(['go', 'next', 'next'])
    // From A.A2 to #m.B.B2, then B2 ⇄ B1 while n < 3 (B1's entry increments n after enB1 is built).
    expect((table[2] as [string, number, Out[]])[2].map((o) => `${o.type}${o.n}`)).toEqual([
      'exA20', 'exA0', 't0', 'enB0', 'enB20',
      'exB20', 't0', 'enB10', 'exB11', 't1', 'enB21', 'exB21', 't1', 'enB11', 'exB12', 't2', 'enB22', 'exB22', 't2', 'enB12',
    ])
  })
})

describe('refuses what it cannot compile, naming it', () => {
  const implementations = { actions: { go: say('go') }, guards: { small }, actors: { job: fromPromise(async () => 1) } }
  /** Configs are untyped here: each one is deliberately outside what the compiler accepts. */
  const base = { createMachine: (config: object) => createMachine(config as never, implementations as never) }
  const machines: Array<[string, () => unknown, RegExp]> = [
    ['a delayed transition', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { after: { 100: 'b' } }, b: {} } }),
      /cannot compile 'after' \(a delayed transition\) in state #x\.a/],
    ['invoke', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { invoke: { src: 'job' } } } }), /'invoke' in state #x\.a/],
    ['an inline guard', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { on: { e: { guard: () => true, target: 'b' } } }, b: {} } }),
      /an inline guard .*on 'e' \[0\].*in state #x\.a/],
    ['an inline action', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { on: { e: { actions: () => undefined } } } } }),
      /the inline action .*on 'e' \[0\]/],
    ['raise', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { on: { e: { actions: raise({ type: 'f' }) } } } } }),
      /the inline action xstate\.raise/],
    ['a custom named action', () => createMachine({ id: 'x', initial: 'a', states: { a: { on: { e: { actions: 'plain' } } } } } as never, { actions: { plain: () => undefined } } as never),
      /the action 'plain' .*a custom action is not an emit or assign/],
    ['a history state', () => base.createMachine({ id: 'x', initial: 'a', states: { a: {}, h: { type: 'history' } } }), /a history state in state #x\.h/],
    ['a parallel state', () => base.createMachine({ id: 'x', type: 'parallel', states: { a: {}, b: {} } }), /a parallel state in state #x/],
    ['a final state', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { type: 'final' } } }), /a final state in state #x\.a/],
    ['a stateIn guard', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { on: { e: { guard: stateIn('#x.a'), target: 'b' } } }, b: {} } }),
      /the guard stateIn/],
    ['a wildcard event', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { on: { '*': { actions: 'go' } } } } }),
      /the wildcard event descriptor '\*'/],
    ['guard params', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { on: { e: { guard: { type: 'small', params: { k: 1 } } } } } } }),
      /params of the guard 'small'/],
    ['action params', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { on: { e: { actions: { type: 'go', params: { k: 1 } } } } } } }),
      /params of the action 'go'/],
    ['onDone', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { initial: 'b', onDone: 'c', states: { b: {} } }, c: {} } }), /'onDone' in state #x\.a/],
    ['emits on the initial state', () => base.createMachine({ id: 'x', initial: 'a', states: { a: { entry: 'go' } } }), /entry actions on the initial state/],
  ]
  test.each(machines)('%s', (_name, make, message) => {
    expect(() => compileMachine(make() as never)).toThrow(message)
  })

  test('a fault naming no guard or action is refused (so a broken-table test cannot pass vacuously)', () => {
    expect(() => compileMachine(nested, { replace: { guards: { nosuch: () => true } } })).toThrow(/faults name no guard or action of the machine: nosuch/)
  })
})
