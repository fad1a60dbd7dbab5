// machines/compile-machine.ts: turns an XState v5 machine, read from its own StateNode tree, into
// a table (leaf states, events, guarded transitions in XState's order with their exit, transition
// and entry actions, eventless transitions). Guards and actions are the plain functions bound in
// bound-logic.ts. Any feature it does not compile is refused at load, by name. Pure.
import type { AnyStateMachine, ContextFrom, EmittedFrom, EventFromLogic } from 'xstate'
import { and, not, or, stateIn } from 'xstate'
import type { LogicAssign, LogicEmit, LogicGuard } from './bound-logic.js'
import { boundLogicOf } from './bound-logic.js'

/** One action of a compiled transition: build and emit a command, or update the context. */
export type CompiledStep<C, E, X> =
  | { readonly name: string; readonly kind: 'emit'; readonly fn: LogicEmit<C, E, X> }
  | { readonly name: string; readonly kind: 'assign'; readonly fn: LogicAssign<C, E> }

export interface CompiledTransition<C, E, X> {
  /** Undefined: always taken. */
  readonly guard: LogicGuard<C, E> | undefined
  /** The leaf state after the transition (the same leaf for a targetless one). */
  readonly target: number
  /** Exit actions (innermost first), the transition's actions, entry actions (outermost first). */
  readonly steps: ReadonlyArray<CompiledStep<C, E, X>>
  /** Whether XState's snapshot changes (state or context): eventless transitions go on only then. */
  readonly changes: boolean
  /** For messages: `#chunk.None on origin-write [0]`. */
  readonly name: string
}

export interface CompiledMachine<C, E extends { type: string }, X> {
  readonly id: string
  /** Leaf (atomic) state node ids in document order; a state number indexes this. */
  readonly leaves: readonly string[]
  /** Each leaf's path from the root, e.g. ['Pending', 'copying']. */
  readonly paths: ReadonlyArray<readonly string[]>
  readonly initial: number
  /** Event types in order of first appearance; an event number indexes this. */
  readonly events: readonly string[]
  readonly eventIndex: ReadonlyMap<string, number>
  /** Candidates for (leaf, event) at `leaf * events.length + event`: the leaf's own first, then its ancestors'. */
  readonly on: ReadonlyArray<ReadonlyArray<CompiledTransition<C, E, X>>>
  /** Eventless (`always`) candidates per leaf, in the same order. */
  readonly always: ReadonlyArray<ReadonlyArray<CompiledTransition<C, E, X>>>
}

/** More eventless steps than this in one event is a cycle in the machine (XState would spin forever). */
const MAX_EVENTLESS = 1000

/**
 * Runs one event through a compiled table as XState's macrostep does: the first candidate of
 * (state, event) whose guard passes, then eventless transitions, with the same event, until
 * none is enabled or one leaves the snapshot unchanged. Emitted commands go onto `out` in
 * order; `context` is updated in place. Returns the new state.
 */
export function stepTable<C, E extends { type: string }, X>(table: CompiledMachine<C, E, X>, state: number, context: C,
  event: E, out: X[]): number {
  const e = table.eventIndex.get(event.type)
  if (e !== undefined) {
    const taken = select(table.on[state * table.events.length + e]!, context, event)
    if (taken !== undefined) state = run(taken, context, event, out)
  }
  for (let steps = 0; table.always[state]!.length > 0; steps++) {
    if (steps === MAX_EVENTLESS) throw new Error(`${table.id}: eventless transitions loop in ${table.leaves[state]}`)
    const taken = select(table.always[state]!, context, event)
    if (taken === undefined) break
    state = run(taken, context, event, out)
    if (!taken.changes) break
  }
  return state
}

function select<C, E, X>(candidates: ReadonlyArray<CompiledTransition<C, E, X>>, c: C, event: E): CompiledTransition<C, E, X> | undefined {
  for (let i = 0; i < candidates.length; i++) {
    const t = candidates[i]!
    if (t.guard === undefined || t.guard(c, event)) return t
  }
  return undefined
}

function run<C, E, X>(t: CompiledTransition<C, E, X>, c: C, event: E, out: X[]): number {
  const steps = t.steps
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!
    if (step.kind === 'emit') out.push(step.fn(c, event))
    else step.fn(c, event)
  }
  return t.target
}

/** @internal Test hook: compile with some named guards or actions replaced (to prove a check can fail). */
export interface CompileFaults {
  replace?: { guards?: Record<string, LogicGuard<never, never>>; actions?: Record<string, LogicEmit<never, never, unknown> | LogicAssign<never, never>> }
}

// The parts of XState's StateNode and TransitionDefinition the compiler reads.
interface Node {
  id: string
  key: string
  type: string
  order: number
  parent?: Node
  config: Record<string, unknown>
  states: Record<string, Node>
  entry: unknown[]
  exit: unknown[]
  transitions: Map<string, Transition[]>
  always?: Transition[]
  initial: { target: Node[]; actions: unknown[] }
}
interface Transition {
  target?: Node[]
  source: Node
  reenter: boolean
  guard?: unknown
  actions: unknown[]
  eventType: string
  [key: string]: unknown
}
type Fn = (...args: never[]) => unknown
type AnyGuard = LogicGuard<unknown, unknown>
type AnyStep = CompiledStep<unknown, unknown, unknown>

const NODE_KEYS = new Set(['id', 'initial', 'states', 'on', 'always', 'entry', 'exit', 'type', 'description', 'meta', 'tags'])
const ROOT_KEYS = new Set([...NODE_KEYS, 'context', 'types', 'schemas', 'version'])
const TRANSITION_KEYS = new Set(['target', 'guard', 'actions', 'reenter', 'description', 'meta'])
const COMPILED_TYPES = new Set(['atomic', 'compound'])
const HIGHER_ORDER = new Map<unknown, string>([
  [(and([]) as unknown as { check: unknown }).check, 'and'],
  [(or([]) as unknown as { check: unknown }).check, 'or'],
  [(not('x') as unknown as { check: unknown }).check, 'not'],
  [(stateIn('x') as unknown as { check: unknown }).check, 'stateIn'],
])

/**
 * Compiles `machine` into a table, or throws a TypeError naming the first feature it cannot
 * compile (and where it is), so a change to the machine is never silently ignored.
 * @example
 * const table = compileMachine(chunkMachine)
 * table.on[table.initial * table.events.length + table.eventIndex.get('origin-write')!]
 */
export function compileMachine<M extends AnyStateMachine>(machine: M, faults: CompileFaults = {}):
CompiledMachine<ContextFrom<M>, EventFromLogic<M> & { type: string }, EmittedFrom<M>> {
  return new Compiler(machine, faults).compile() as never
}

class Compiler {
  readonly #root: Node
  readonly #guards: Record<string, unknown>
  readonly #actions: Record<string, unknown>
  readonly #replaced = new Set<string>()

  constructor(readonly machine: AnyStateMachine, readonly faults: CompileFaults) {
    this.#root = machine.root as unknown as Node
    this.#guards = machine.implementations.guards as Record<string, unknown>
    this.#actions = machine.implementations.actions as Record<string, unknown>
  }

  compile(): CompiledMachine<unknown, { type: string }, unknown> {
    const nodes = this.#nodes(this.#root)
    for (const node of nodes) this.#check(node)
    const leaves = nodes.filter((n) => n.type === 'atomic')
    const leafIndex = new Map(leaves.map((n, i) => [n, i]))
    const events: string[] = []
    for (const node of nodes) for (const type of node.transitions.keys()) if (!events.includes(type)) events.push(type)

    const compileAll = (leaf: Node, pick: (n: Node) => Transition[] | undefined) =>
      lineage(leaf).flatMap((n) => (pick(n) ?? []).map((t, i) => this.#transition(leaf, t, i, leafIndex)))
    const on = leaves.flatMap((leaf) => events.map((type) => compileAll(leaf, (n) => n.transitions.get(type))))
    const always = leaves.map((leaf) => compileAll(leaf, (n) => n.always))

    const initialLeaf = descendInitial(this.#root)
    for (const n of lineage(initialLeaf)) {
      if (n.entry.length > 0) this.#refuse(n, 'entry actions on the initial state (nothing would receive their commands)')
      if (n.always !== undefined) this.#refuse(n, 'an eventless (always) transition out of the initial state')
    }
    const unused = [...Object.keys(this.faults.replace?.guards ?? {}), ...Object.keys(this.faults.replace?.actions ?? {})]
      .filter((name) => !this.#replaced.has(name))
    if (unused.length > 0) throw new TypeError(`compileMachine: faults name no guard or action of the machine: ${unused.join(', ')}`)
    return {
      id: this.#root.id,
      leaves: leaves.map((n) => n.id),
      paths: leaves.map((n) => lineage(n).reverse().slice(1).map((a) => a.key)),
      initial: leafIndex.get(initialLeaf)!,
      events,
      eventIndex: new Map(events.map((type, i) => [type, i])),
      on,
      always,
    }
  }

  /** The root and every descendant, in document order. */
  #nodes(node: Node): Node[] {
    return [node, ...Object.values(node.states).flatMap((child) => this.#nodes(child))]
  }

  #refuse(node: Node, what: string): never {
    throw new TypeError(`compileMachine: cannot compile ${what} in state #${node.id} of machine '${this.#root.id}'`)
  }

  /** Refuses every state-level feature the table has no place for. */
  #check(node: Node): void {
    if (!COMPILED_TYPES.has(node.type)) this.#refuse(node, `a ${node.type} state`)
    const allowed = node === this.#root ? ROOT_KEYS : NODE_KEYS
    for (const key of Object.keys(node.config)) {
      if (node.config[key] === undefined) continue
      if (!allowed.has(key)) this.#refuse(node, `'${key}'${key === 'after' ? ' (a delayed transition)' : ''}`)
    }
    const initial = node.config.initial
    if (initial !== undefined && typeof initial !== 'string') this.#refuse(node, 'an initial transition object (initial actions)')
    for (const type of node.transitions.keys()) {
      if (type.includes('*')) this.#refuse(node, `the wildcard event descriptor '${type}'`)
    }
  }

  #transition(leaf: Node, t: Transition, index: number, leafIndex: Map<Node, number>): CompiledTransition<unknown, unknown, unknown> {
    const source = t.source
    const where = `${t.eventType === '' ? 'always' : `on '${t.eventType}'`} [${index}]`
    for (const key of Object.keys(t)) {
      if (['source', 'eventType', 'toJSON'].includes(key) || t[key] === undefined) continue
      if (!TRANSITION_KEYS.has(key)) this.#refuse(source, `'${key}' of the transition ${where}`)
    }
    if ((t.target?.length ?? 0) > 1) this.#refuse(source, `a transition with several targets (${where})`)
    const guard = t.guard === undefined ? undefined : this.#guard(source, t.guard, where, 0)
    const own = t.actions.map((a) => this.#action(source, a, where))
    const target = t.target?.[0]
    if (target === undefined) {
      return { guard, target: leafIndex.get(leaf)!, steps: own, changes: own.some((s) => s.kind === 'assign'), name: `#${source.id} ${where}` }
    }
    // XState's microstep (SCXML): exit the active states inside the transition's domain,
    // innermost first; run the transition's actions; enter from the domain down to the target
    // and its initial descendants, outermost first.
    const active = lineage(leaf)
    const domain = transitionDomain(t, target) ?? this.#refuse(source, `a reentering transition of the root (${where})`)
    const exits = active.filter((n) => (n !== domain && isDescendant(n, domain)) || (t.reenter && n === source && n === domain))
      .sort((a, b) => b.order - a.order)
    const enters = new Set<Node>()
    if (target !== source || source !== domain || t.reenter) enters.add(target)
    for (let n = target; n.type === 'compound';) {
      n = n.initial.target[0]!
      enters.add(n)
    }
    const reentrancy = source.parent === undefined && t.reenter ? undefined : domain
    for (let n = target.parent; n !== undefined && n !== domain; n = n.parent) {
      if (reentrancy === undefined || isDescendant(n, reentrancy)) enters.add(n)
    }
    const entered = [...enters].sort((a, b) => a.order - b.order)
    const after = new Set([...active.filter((n) => !exits.includes(n)), ...entered])
    const next = [...after].filter((n) => n.type === 'atomic')
    if (next.length !== 1) this.#refuse(source, `a transition that does not end in one leaf state (${where})`)
    const steps = [
      ...exits.flatMap((n) => n.exit.map((a) => this.#action(n, a, 'exit'))),
      ...own,
      ...entered.flatMap((n) => n.entry.map((a) => this.#action(n, a, 'entry'))),
    ]
    const to = leafIndex.get(next[0]!)!
    return { guard, target: to, steps, changes: to !== leafIndex.get(leaf) || steps.some((s) => s.kind === 'assign'), name: `#${source.id} ${where}` }
  }

  #guard(node: Node, guard: unknown, where: string, depth: number): AnyGuard {
    if (depth > 16) this.#refuse(node, `a guard nested deeper than 16 levels (${where})`)
    if (typeof guard === 'string') return this.#namedGuard(node, guard, where, depth)
    if (typeof guard === 'object' && guard !== null && 'type' in guard) {
      if ('params' in guard) this.#refuse(node, `params of the guard '${String(guard.type)}' (${where})`)
      return this.#namedGuard(node, String(guard.type), where, depth)
    }
    if (typeof guard === 'function' && 'check' in guard) {
      const kind = HIGHER_ORDER.get(guard.check)
      const parts = (guard as unknown as { guards?: unknown[] }).guards
      if (kind === undefined || kind === 'stateIn' || parts === undefined) {
        this.#refuse(node, `the guard ${kind ?? guard.name} (${where}): only named guards and and/or/not of them compile`)
      }
      const gs = parts.map((g) => this.#guard(node, g, where, depth + 1))
      if (kind === 'not') {
        const [g] = gs as [AnyGuard]
        return (c, e) => !g(c, e)
      }
      if (gs.length === 2) {
        const [a, b] = gs as [AnyGuard, AnyGuard]
        return kind === 'and' ? (c, e) => a(c, e) && b(c, e) : (c, e) => a(c, e) || b(c, e)
      }
      return kind === 'and' ? (c, e) => gs.every((g) => g(c, e)) : (c, e) => gs.some((g) => g(c, e))
    }
    return this.#refuse(node, `an inline guard ${typeof guard === 'function' && guard.name !== '' ? `'${guard.name}' ` : ''}(${where}): name it in setup()`)
  }

  #namedGuard(node: Node, name: string, where: string, depth: number): AnyGuard {
    const implementation = this.#guards[name]
    if (implementation === undefined) this.#refuse(node, `the guard '${name}', which is not implemented (${where})`)
    const replaced = this.faults.replace?.guards?.[name]
    if (replaced !== undefined) {
      this.#replaced.add(name)
      return replaced as AnyGuard
    }
    const bound = boundLogicOf(implementation)
    if (bound?.kind === 'guard') return bound.fn as AnyGuard
    if (bound === undefined && typeof implementation === 'function' && 'check' in implementation) {
      return this.#guard(node, implementation, `${where}, guard '${name}'`, depth + 1)
    }
    return this.#refuse(node, `the guard '${name}' (${where}): its implementation is not a logic function bound with bindLogic()`)
  }

  #action(node: Node, action: unknown, where: string): AnyStep {
    let name: string
    if (typeof action === 'string') name = action
    else if (typeof action === 'object' && action !== null && 'type' in action) {
      if ('params' in action) this.#refuse(node, `params of the action '${String(action.type)}' (${where})`)
      name = String(action.type)
    } else {
      const type = typeof action === 'function' ? (action as { type?: string }).type ?? (action.name || 'anonymous') : typeof action
      return this.#refuse(node, `the inline action ${type} (${where}): only emit or assign actions named in setup() compile`)
    }
    const implementation = this.#actions[name]
    if (implementation === undefined) this.#refuse(node, `the action '${name}', which is not implemented (${where})`)
    const bound = boundLogicOf(implementation)
    const builtin = (implementation as { type?: string }).type
    if (bound === undefined || bound.kind === 'guard' || builtin !== `xstate.${bound.kind}`) {
      this.#refuse(node, `the action '${name}' (${where}): ${builtin ?? 'a custom action'} is not an emit or assign of a logic function bound with bindLogic()`)
    }
    const replaced = this.faults.replace?.actions?.[name]
    if (replaced !== undefined) this.#replaced.add(name)
    return { name, kind: bound.kind, fn: (replaced ?? bound.fn) as Fn } as AnyStep
  }
}

/** The node and its ancestors, innermost first. */
function lineage(node: Node): Node[] {
  const out: Node[] = []
  for (let n: Node | undefined = node; n !== undefined; n = n.parent) out.push(n)
  return out
}

function isDescendant(node: Node, ancestor: Node): boolean {
  for (let n = node.parent; n !== undefined; n = n.parent) if (n === ancestor) return true
  return false
}

function descendInitial(node: Node): Node {
  let n = node
  while (n.type === 'compound') n = n.initial.target[0]!
  return n
}

/** XState's getTransitionDomain, for one target and no history or parallel states. */
function transitionDomain(t: Transition, target: Node): Node | undefined {
  if (!t.reenter && (target === t.source || isDescendant(target, t.source))) return t.source
  for (let n = target.parent; n !== undefined; n = n.parent) if (isDescendant(t.source, n)) return n
  return undefined // a reentering transition of the root: XState exits and re-enters every state
}
