// actors/read-tracker.ts: snapshot reads sent to the origin, per chunk (spec §1 "tracked
// I/O", §4 rows 6, 11, 12). A chunk in CompletedWithReaders leaves it when its count is 0.

export class ReadTracker {
  readonly #inFlight = new Map<number, number>()

  track(chunk: number): void {
    this.#inFlight.set(chunk, (this.#inFlight.get(chunk) ?? 0) + 1)
  }

  /** Returns true when this was the chunk's last tracked read. */
  untrack(chunk: number): boolean {
    const left = (this.#inFlight.get(chunk) ?? 0) - 1
    if (left > 0) {
      this.#inFlight.set(chunk, left)
      return false
    }
    this.#inFlight.delete(chunk)
    return true
  }

  count(chunk: number): number {
    return this.#inFlight.get(chunk) ?? 0
  }
}
