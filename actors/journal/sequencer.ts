// actors/journal/sequencer.ts: with a journal on, the engine takes its inputs (requests from
// callers, device completions) one at a time, each in its own turn of the event loop, so that
// every reaction to one input has run before the next arrives. The journal's order of inputs
// then determines everything else, and a replay that feeds the same inputs in the same order
// reproduces the same entries (architecture rule 2).

export class Sequencer {
  readonly #queue: Array<() => void> = []
  #scheduled = false

  enqueue(input: () => void): void {
    this.#queue.push(input)
    this.#schedule()
  }

  #schedule(): void {
    if (this.#scheduled || this.#queue.length === 0) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.#queue.shift()!()
      this.#schedule()
    })
  }
}
