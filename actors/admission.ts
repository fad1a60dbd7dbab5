// actors/admission.ts: when a new write may go on. Two reasons to wait: a snapshot is being
// activated, dropped or taken over by a merge (spec §2: no origin write may be in flight then),
// or a snapshot has too many copies in flight (the kernel's cow threshold, §16). Writes re-run
// after a pending exception finishes, and merge-triggered copies, never wait here.
//
// The threshold is checked per chunk piece, immediately before the pass that may start a copy,
// and a waiting piece is resumed synchronously by `wake()`: check and copy happen in one run
// of code, so a burst of admitted writes can never overshoot the threshold.

export class Admission {
  #closedBy = 0
  #originWritesInFlight = 0
  /** Callers of `whenOpen`, resumed by `resume()`. */
  readonly #closedWaiters: Array<() => void> = []
  readonly #drained: Array<() => void> = []
  /** Pieces waiting for copies to finish, oldest first; each one runs its pass when resumed. */
  readonly #copyWaiters: Array<() => void> = []
  #copyWaitersHead = 0
  #waking = false

  constructor(private readonly overThreshold: () => boolean) {}

  /** True while activation, drop or a merge handover keeps new writes out. */
  get closed(): boolean {
    return this.#closedBy > 0
  }

  /** Resolves once new writes may enter (at once when the gate is open). */
  async whenOpen(): Promise<void> {
    while (this.#closedBy > 0) await new Promise<void>((resolve) => this.#closedWaiters.push(resolve))
  }

  /**
   * True when a piece that may start a copy must queue behind the copy threshold: some
   * snapshot is at the threshold, or earlier pieces are already queued (first come, first served).
   */
  get copyMustWait(): boolean {
    return this.#copyWaitersHead < this.#copyWaiters.length || this.overThreshold()
  }

  /**
   * Queues `run` until the copy threshold lets it go. `run` is called synchronously from
   * `wake()` and must start its copies before it returns (that is what keeps the count exact).
   */
  queueForCopy(run: () => void): void {
    this.#copyWaiters.push(run)
  }

  /** Copies waiting for room, for tests and status. */
  get piecesWaiting(): number {
    return this.#copyWaiters.length - this.#copyWaitersHead
  }

  originWriteStarted(): void {
    this.#originWritesInFlight++
  }

  originWriteFinished(): void {
    if (--this.#originWritesInFlight === 0) for (const resolve of this.#drained.splice(0)) resolve()
  }

  /** Stops new writes and resolves once no origin write is in flight. */
  async quiesce(): Promise<void> {
    this.#closedBy++
    while (this.#originWritesInFlight > 0) await new Promise<void>((resolve) => this.#drained.push(resolve))
  }

  resume(): void {
    this.#closedBy--
    if (this.#closedBy === 0) for (const resolve of this.#closedWaiters.splice(0)) resolve()
    this.wake()
  }

  /** A copy finished (or a snapshot left): lets queued pieces go, one at a time, while there is room. */
  wake(): void {
    if (this.#waking) return // a piece resumed below woke us again: the loop below goes on
    this.#waking = true
    try {
      while (this.#copyWaitersHead < this.#copyWaiters.length && !this.overThreshold()) {
        const run = this.#copyWaiters[this.#copyWaitersHead]!
        this.#copyWaiters[this.#copyWaitersHead++] = noop // let the closure go
        run()
      }
      if (this.#copyWaitersHead === this.#copyWaiters.length) {
        this.#copyWaiters.length = 0
        this.#copyWaitersHead = 0
      }
    } finally {
      this.#waking = false
    }
  }
}

const noop = (): void => undefined
