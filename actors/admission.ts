// actors/admission.ts: when a new write may enter the engine. Two reasons to wait: a snapshot
// is being activated (spec §2: no origin write may be in flight then), or a snapshot has too
// many copies in flight (the kernel's cow threshold, §16). Writes re-run after a pending
// exception finishes never wait here.

export class Admission {
  #closedBy = 0
  #originWritesInFlight = 0
  readonly #waiting: Array<() => void> = []
  readonly #drained: Array<() => void> = []

  constructor(private readonly overThreshold: () => boolean) {}

  /** True when a new write must call `admit()` first (the fast path skips the await). */
  get mustWait(): boolean {
    return this.#closedBy > 0 || this.overThreshold()
  }

  async admit(): Promise<void> {
    while (this.mustWait) await new Promise<void>((resolve) => this.#waiting.push(resolve))
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
    this.wake()
  }

  /** Lets waiting writes look again (a copy finished, the gate opened). */
  wake(): void {
    if (this.#waiting.length > 0 && !this.mustWait) for (const resolve of this.#waiting.splice(0)) resolve()
  }
}
