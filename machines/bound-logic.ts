// machines/bound-logic.ts: the link between a plain logic function and the XState implementation
// that wraps it. setup() gets the wrapper; the compiler looks the wrapper up here and binds the
// very function XState runs, so the two executors can never run different logic.

/** A guard: a pure predicate of the context and the event. */
export type LogicGuard<C, E> = (context: C, event: E) => boolean
/** A command builder: what an `emit` action emits, built from the context and the event. */
export type LogicEmit<C, E, X> = (context: C, event: E) => X
/** An assign action: mutates the given context record (XState's wrapper hands it a copy). */
export type LogicAssign<C, E> = (context: C, event: E) => void

export type BoundLogic =
  | { readonly kind: 'guard'; readonly fn: LogicGuard<never, never> }
  | { readonly kind: 'emit'; readonly fn: LogicEmit<never, never, unknown> }
  | { readonly kind: 'assign'; readonly fn: LogicAssign<never, never> }

const bound = new WeakMap<object, BoundLogic>()

/** Records that `implementation` (given to setup()) runs exactly `logic.fn`; returns it unchanged. */
export function bindLogic<T extends object>(implementation: T, logic: BoundLogic): T {
  bound.set(implementation, logic)
  return implementation
}

/** The plain function an XState implementation wraps, if it was made with bindLogic. */
export function boundLogicOf(implementation: unknown): BoundLogic | undefined {
  return typeof implementation === 'function' || (typeof implementation === 'object' && implementation !== null)
    ? bound.get(implementation)
    : undefined
}
