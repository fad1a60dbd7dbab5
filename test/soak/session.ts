// test/soak/session.ts: a pipelining NBD client for the soak tests: many requests in flight on
// one connection, replies matched by handle (in any order), so load and abrupt ends can be
// driven from the test process without an external client.
import * as P from '../../io/nbd/protocol.js'
import { RawClient } from '../nbd/raw-client.js'

export class ClientClosed extends Error {}

interface Waiting { readLength: number; resolve: (data: Buffer) => void; reject: (e: Error) => void }

export class NbdSession {
  readonly #waiting = new Map<number, Waiting>()
  #nextHandle = 1
  #gone: Error | undefined

  private constructor(readonly raw: RawClient) {
    void this.#replies()
  }

  static async open(socket: string, name: string): Promise<NbdSession> {
    const raw = await RawClient.connect(socket)
    await raw.open(name)
    return new NbdSession(raw)
  }

  get inFlight(): number { return this.#waiting.size }

  read(offset: number, length: number): Promise<Buffer> {
    return this.#send(P.NBD_CMD_READ, offset, length, length)
  }

  async write(offset: number, data: Uint8Array, fua = false): Promise<void> {
    await this.#send(P.NBD_CMD_WRITE, offset, data.length, 0, data, fua ? P.NBD_CMD_FLAG_FUA : 0)
  }

  async flush(): Promise<void> {
    await this.#send(P.NBD_CMD_FLUSH, 0, 0, 0)
  }

  /** Polite end: NBD_CMD_DISC, then waits for the server to close. */
  async disconnect(): Promise<void> {
    this.raw.request(P.NBD_CMD_DISC, 0, 0, 0)
    await this.raw.closed
  }

  /** Abrupt end: the socket is destroyed with whatever is in flight (unix sockets: a reset). */
  destroy(): void { this.raw.destroy() }

  #send(type: number, offset: number, length: number, readLength: number, payload?: Uint8Array, flags = 0): Promise<Buffer> {
    if (this.#gone) return Promise.reject(this.#gone)
    const handle = this.#nextHandle++
    const reply = new Promise<Buffer>((resolve, reject) => this.#waiting.set(handle, { readLength, resolve, reject }))
    this.raw.request(type, handle, offset, length, flags, payload)
    return reply
  }

  async #replies(): Promise<void> {
    try {
      for (;;) {
        const h = await this.raw.read(16)
        if (h === undefined) throw new ClientClosed('the server closed the connection')
        if (h.readUInt32BE(0) !== P.NBD_SIMPLE_REPLY_MAGIC) throw new Error(`bad reply magic 0x${h.readUInt32BE(0).toString(16)}`)
        const error = h.readUInt32BE(4)
        const handle = Number(h.readBigUInt64BE(8))
        const w = this.#waiting.get(handle)
        if (w === undefined) throw new Error(`a reply for handle ${handle}, which is not in flight`)
        this.#waiting.delete(handle)
        if (error !== 0) { w.reject(new Error(`NBD error ${error} for handle ${handle}`)); continue }
        const data = w.readLength > 0 ? await this.raw.read(w.readLength) : Buffer.alloc(0)
        if (data === undefined) throw new ClientClosed('the server closed mid-reply')
        w.resolve(data)
      }
    } catch (e) {
      this.#gone = e instanceof Error ? e : new Error(String(e))
      for (const w of this.#waiting.values()) w.reject(this.#gone)
      this.#waiting.clear()
    }
  }
}
