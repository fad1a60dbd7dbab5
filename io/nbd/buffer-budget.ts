// io/nbd/buffer-budget.ts: the bytes every connection of one server holds for its requests
// (WRITE payloads until the device is done, READ replies until the socket has taken them),
// against one limit. Without it, clients that send big requests and do not read their replies
// (or a slow disk) make the server buffer gigabytes: 64 READs of 32 MiB per connection.

/**
 * A server-wide byte count with a limit. Connections charge what they hold and release it
 * exactly once; while the total is at or over the limit they stop reading new requests (one
 * holding nothing may still take one, so no client is starved by others) and are woken when
 * it falls below half.
 */
export class BufferBudget {
  readonly limit: number
  #used = 0
  readonly #waiting = new Set<() => void>()

  constructor(limit: number) {
    if (!(limit > 0)) throw new RangeError(`BufferBudget limit must be a positive number of bytes, not ${limit}`)
    this.limit = limit
  }

  /** Bytes held by every connection now. */
  get used(): number {
    return this.#used
  }

  /** True while connections that already hold something must not take more. */
  get full(): boolean {
    return this.#used >= this.limit
  }

  charge(bytes: number): void {
    this.#used += bytes
  }

  release(bytes: number): void {
    this.#used -= bytes
    if (this.#used < 0) throw new RangeError(`BufferBudget released ${-this.#used} bytes more than were charged`)
    if (this.#waiting.size > 0 && this.#used < this.limit / 2) {
      const woken = [...this.#waiting]
      this.#waiting.clear()
      for (const wake of woken) wake()
    }
  }

  /** Calls `wake` once, when the total falls below half the limit (at once if it is there now). */
  whenRoom(wake: () => void): void {
    if (this.#used < this.limit / 2) wake()
    else this.#waiting.add(wake)
  }

  /** Forgets a waiter (its connection closed). */
  forget(wake: () => void): void {
    this.#waiting.delete(wake)
  }
}
