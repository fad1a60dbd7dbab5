// io/nbd/reply-writer.ts: puts transmission replies on the socket. Each reply is one write;
// while other requests are in flight, replies produced in the same event-loop turn leave in one
// writev (cork now, uncork in setImmediate, after every completion of the poll phase). A pooled
// reply goes back to its pool only from the socket's write callback, when the socket no longer
// refers to it.

import type { Socket } from 'node:net'
import type { BufferPool } from './buffer-pool.js'

/** The socket side of a connection's transmission phase. */
export class ReplyWriter {
  readonly #socket: Socket
  readonly #pool: BufferPool
  #corked = false
  /** Pooled replies given to the socket, oldest first; write callbacks come in write order. */
  readonly #written: Buffer[] = []
  /** False after a failed write: callbacks may then come out of order, so nothing more is recycled. */
  #recycling = true
  readonly #flush = (): void => {
    this.#corked = false
    this.#socket.uncork()
  }
  readonly #onWritten = (error?: Error | null): void => {
    if (error !== undefined && error !== null) {
      this.#recycling = false
      this.#written.length = 0
      return
    }
    const buffer = this.#written.shift()
    if (buffer !== undefined) this.#pool.release(buffer)
  }

  constructor(socket: Socket, pool: BufferPool) {
    this.#socket = socket
    this.#pool = pool
  }

  /**
   * Queues `reply` (from the pool when `pooled`); false when the socket asks the sender to
   * wait for 'drain'. With `batch` (more replies may come this turn) it waits for the turn's
   * end; a lone request's reply leaves at once, not behind the rest of the turn's work.
   * A socket that is gone takes nothing, and a pooled reply goes straight back.
   */
  send(reply: Buffer, pooled: boolean, batch = true): boolean {
    const socket = this.#socket
    if (socket.destroyed || !socket.writable) {
      if (pooled && this.#recycling) this.#pool.release(reply)
      return true
    }
    if (batch && !this.#corked) {
      this.#corked = true
      socket.cork()
      setImmediate(this.#flush)
    }
    if (!pooled || !this.#recycling) return socket.write(reply)
    this.#written.push(reply)
    return socket.write(reply, this.#onWritten)
  }
}
