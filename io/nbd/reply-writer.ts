// io/nbd/reply-writer.ts: puts transmission replies on the socket. Each reply is one write;
// while other requests are in flight, replies produced in the same event-loop turn leave in one
// writev (cork now, uncork in setImmediate, after every completion of the poll phase). A pooled
// reply goes back to its pool, and the bytes a reply holds go back to the connection's count,
// only from the socket's write callback, when the socket no longer refers to them.

import type { Socket } from 'node:net'
import type { BufferPool } from './buffer-pool.js'

/** The socket side of a connection's transmission phase. */
export class ReplyWriter {
  readonly #socket: Socket
  readonly #pool: BufferPool
  /** Told the bytes a reply held once the socket has taken it (or will never send it). */
  readonly #onTaken: (bytes: number) => void
  #corked = false
  /** One entry per reply given to the socket, oldest first (write callbacks come in write order): the pooled buffer, if any ... */
  readonly #written: Array<Buffer | undefined> = []
  /** ... and the bytes it holds for the connection's count. */
  readonly #held: number[] = []
  #heldTotal = 0
  /** Set after a failed write or abandon(): callbacks may then come out of order, so none is trusted. */
  #dead = false
  readonly #flush = (): void => {
    this.#corked = false
    this.#socket.uncork()
  }
  readonly #onWritten = (error?: Error | null): void => {
    if (this.#dead) return
    if (error !== undefined && error !== null) {
      this.abandon()
      return
    }
    const buffer = this.#written.shift()
    const held = this.#held.shift() ?? 0
    if (buffer !== undefined) this.#pool.release(buffer)
    if (held > 0) {
      this.#heldTotal -= held
      this.#onTaken(held)
    }
  }

  constructor(socket: Socket, pool: BufferPool, onTaken: (bytes: number) => void = () => {}) {
    this.#socket = socket
    this.#pool = pool
    this.#onTaken = onTaken
  }

  /**
   * Queues `reply` (from the pool when `pooled`), holding `held` bytes of the connection's count
   * until the socket has taken it; false when the socket asks the sender to wait for 'drain'.
   * With `batch` (more replies may come this turn) it waits for the turn's end; a lone
   * request's reply leaves at once, not behind the rest of the turn's work. A socket that is
   * gone takes nothing: a pooled reply goes straight back, and so do the bytes it held.
   */
  send(reply: Buffer, pooled: boolean, batch = true, held = 0): boolean {
    const socket = this.#socket
    const gone = socket.destroyed || !socket.writable
    if (gone || this.#dead) {
      if (held > 0) this.#onTaken(held)
      if (!gone) return socket.write(reply) // after a failed write: neither recycled nor counted
      if (pooled && !this.#dead) this.#pool.release(reply)
      return true
    }
    if (batch && !this.#corked) {
      this.#corked = true
      socket.cork()
      setImmediate(this.#flush)
    }
    this.#written.push(pooled ? reply : undefined)
    this.#held.push(held)
    this.#heldTotal += held
    return socket.write(reply, this.#onWritten)
  }

  /**
   * The connection is ending (or a write failed): every byte still held is given back now,
   * once, and later callbacks are ignored. Pooled buffers the socket may still refer to are
   * not recycled.
   */
  abandon(): void {
    if (this.#dead) return
    this.#dead = true
    const total = this.#heldTotal
    this.#heldTotal = 0
    this.#written.length = 0
    this.#held.length = 0
    if (total > 0) this.#onTaken(total)
  }
}
