// io/nbd/connection.ts: one client, from greeting to disconnect. Every request is started as
// soon as it is parsed and answered when it completes, so many are in flight at once; a
// malformed stream ends only this connection, and nothing is written to a destroyed socket.
// After NBD_OPT_STARTTLS the plain socket is swapped for a TLS one (tls.ts).

import type { Socket } from 'node:net'
import { statusExtents } from './block-status.js'
import type { BufferBudget } from './buffer-budget.js'
import { BufferPool } from './buffer-pool.js'
import { ByteQueue } from './byte-queue.js'
import { negotiate, type NbdExport } from './handshake.js'
import type { MetaContext } from './meta-context.js'
import { blockStatusReply, doneReply, errorReply, readReply } from './replies.js'
import { ReplyWriter } from './reply-writer.js'
import { checkRequest, RequestParser, type NbdRequest } from './requests.js'
import { startTls, type TlsPolicy } from './tls.js'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EIO,
} from './protocol.js'

/** Requests in flight before the connection stops reading (resumes below half). */
const MAX_IN_FLIGHT = 64
/**
 * Bytes one connection may hold (WRITE payloads until done, READ replies until the socket took
 * them) before it stops reading requests (resumes below half): two of the largest requests.
 * Without it a client that does not read its replies makes the server buffer 64 × 32 MiB.
 */
const MAX_HELD_BYTES = 64 * 1024 * 1024
/** How long a hang-up waits for queued replies to drain before it drops the socket. */
const LINGER_MS = 2000
/** WRITE_ZEROES goes to the device in pieces of at most this many bytes. */
const ZERO_PIECE_BYTES = 1024 * 1024
/**
 * Free reply buffers (READ data, done headers) a connection keeps for reuse, in bytes, and the
 * longest it keeps: one sequential 1 MiB reply, or a QD64 of 4 KiB ones. Every client holds
 * its own (64 connections: up to 68 MiB), so it is no more than one big buffer.
 */
const POOL_BYTES = 1024 * 1024 + 64 * 1024
const POOL_MAX_BUFFER = 1024 * 1024 + 64

/** Zeros WRITE_ZEROES hands the device, shared: nothing ever writes into them. */
let zeros = new Uint8Array(0)
function zeroPiece(length: number): Uint8Array {
  if (zeros.length < length) zeros = new Uint8Array(Math.min(ZERO_PIECE_BYTES, Math.max(length, 64 * 1024)))
  return zeros.subarray(0, length)
}

class ClientGone extends Error {}

/** A live client connection; `close()` stops reading, lets requests in flight finish, then hangs up. */
export class NbdConnection {
  #socket: Socket
  readonly #exports: ReadonlyMap<string, NbdExport>
  readonly #tls: TlsPolicy | undefined
  readonly #queue = new ByteQueue()
  readonly #parser = new RequestParser(this.#queue)
  #phase: 'handshake' | 'transmission' | 'closing' | 'closed' = 'handshake'
  #waiting: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined
  #export: NbdExport | undefined
  #structured = false
  #contexts: readonly MetaContext[] = []
  #inFlight = 0
  readonly #buffers = new BufferPool(POOL_BYTES, POOL_MAX_BUFFER)
  #replies: ReplyWriter | undefined
  #paused = false
  /** Bytes this connection holds, charged to the server's budget too. */
  #held = 0
  readonly #budget: BufferBudget | undefined
  readonly #onRoom = (): void => this.#maybeResume()
  #idle: Array<() => void> = []
  /** Resolves once the socket has closed. */
  readonly closed: Promise<void>

  constructor(socket: Socket, exports: ReadonlyMap<string, NbdExport>, tls?: TlsPolicy, handshakeTimeoutMs = Infinity, budget?: BufferBudget) {
    this.#socket = socket
    this.#exports = exports
    this.#tls = tls
    this.#budget = budget
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
    socket.on('error', () => {}) // a reset client is a normal end; 'close' follows
    socket.on('close', () => this.#onClose())
    this.#listen(socket)
    // A client that never picks an export is dropped: half-open clients must not pile up.
    const deadline = Number.isFinite(handshakeTimeoutMs)
      ? setTimeout(() => { if (this.#phase === 'handshake') this.#socket.destroy() }, handshakeTimeoutMs).unref()
      : undefined
    void this.#handshake().finally(() => clearTimeout(deadline))
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#phase === 'closing' || this.#phase === 'closed') return // nothing more will be parsed
    this.#queue.push(chunk)
    this.#pump()
  }

  readonly #onDrain = (): void => this.#maybeResume()

  #listen(socket: Socket): void {
    socket.on('data', this.#onData)
    socket.on('drain', this.#onDrain)
  }

  /**
   * NBD_OPT_STARTTLS was acknowledged: reads, writes and the hang-up go through a TLS socket
   * from now on. The plain socket still reports 'close' (TLS closes with it, and it with TLS).
   */
  async #startTls(): Promise<void> {
    // The client must wait for STARTTLS's reply before it sends anything: bytes already here are a protocol error.
    if (this.#queue.length > 0) throw new Error('the client sent data after NBD_OPT_STARTTLS before its reply')
    this.#socket.off('data', this.#onData).off('drain', this.#onDrain)
    const upgraded = startTls(this.#socket, this.#tls!)
    this.#socket = upgraded.socket
    this.#listen(upgraded.socket)
    await upgraded.secure
  }

  /** Stops taking requests, waits for those in flight, then closes the socket. */
  async close(): Promise<void> {
    if (this.#phase !== 'closed') {
      this.#phase = 'closing'
      await this.#whenIdle()
      this.#endSocket()
    }
    await this.closed
  }

  async #handshake(): Promise<void> {
    let result
    try {
      const tls = this.#tls === undefined ? undefined : { mode: this.#tls.mode, startTls: () => this.#startTls() }
      result = await negotiate({ read: (n) => this.#read(n), write: (bytes) => this.#write(bytes), ...(tls === undefined ? {} : { tls }) }, this.#exports)
    } catch {
      this.#socket.destroy() // the client went away mid-handshake
      return
    }
    if (result.kind === 'end' || this.#phase !== 'handshake') {
      this.#endSocket() // after ABORT's ACK has gone out
      return
    }
    this.#export = result.export
    this.#structured = result.structured
    this.#contexts = result.contexts
    this.#replies = new ReplyWriter(this.#socket, this.#buffers, this.#release)
    this.#phase = 'transmission'
    this.#pump()
  }

  #read(n: number): Promise<Buffer> {
    const bytes = this.#queue.take(n)
    if (bytes !== undefined) return Promise.resolve(bytes)
    if (this.#phase !== 'handshake') return Promise.reject(new ClientGone())
    return new Promise((resolve, reject) => {
      this.#waiting = { n, resolve, reject }
    })
  }

  #write(bytes: Uint8Array): void {
    if (this.#socket.destroyed || !this.#socket.writable) return
    if (!this.#socket.write(bytes)) this.#pause()
  }

  #pump(): void {
    if (this.#phase === 'handshake') {
      const waiting = this.#waiting
      if (waiting === undefined) return
      const bytes = this.#queue.take(waiting.n)
      if (bytes === undefined) return
      this.#waiting = undefined
      waiting.resolve(bytes)
      return
    }
    while (this.#phase === 'transmission' && !this.#paused) {
      if (this.#mustWait()) {
        this.#pause()
        return
      }
      const parsed = this.#parser.next()
      if (parsed === undefined) return
      if (parsed.kind === 'fatal') {
        this.#hangUp()
        return
      }
      this.#dispatch(parsed.request)
    }
  }

  #dispatch(request: NbdRequest): void {
    const exp = this.#export!
    if (request.type === NBD_CMD_DISC) {
      // Finish what is in flight, then close (spec: DISC has no reply).
      this.#phase = 'closing'
      void this.#whenIdle().then(() => this.#endSocket())
      return
    }
    const refused = checkRequest(request, { size: exp.device.size, readOnly: exp.readOnly, blockStatus: this.#structured && this.#contexts.length > 0 })
    if (refused !== undefined) {
      this.#send(errorReply(request.handle, refused.error, this.#structured, refused.message), false)
      return
    }
    this.#inFlight++
    void this.#perform(request, exp)
  }

  /**
   * Replies batch only while other requests are in flight: at queue depth 1 nothing else will
   * come this turn. `held` bytes of this connection's count go back once the socket took it.
   */
  #send(reply: Buffer, pooled: boolean, held = 0): void {
    if (!this.#replies!.send(reply, pooled, this.#inFlight > 1, held)) this.#pause()
  }

  /** Counts `bytes` this connection now holds, here and in the server's budget. */
  #hold(bytes: number): void {
    this.#held += bytes
    this.#budget?.charge(bytes)
  }

  /** Gives back `bytes` counted by #hold (exactly once for each). */
  readonly #release = (bytes: number): void => {
    this.#held -= bytes
    this.#budget?.release(bytes)
    this.#maybeResume()
  }

  /**
   * No new request is taken while too many are in flight, while this connection holds too
   * many bytes, or while the server's budget is full and this connection holds some (one that
   * holds nothing may always take one: others cannot starve it).
   */
  #mustWait(): boolean {
    return this.#inFlight >= MAX_IN_FLIGHT || this.#held >= MAX_HELD_BYTES || (this.#held > 0 && this.#budget?.full === true)
  }

  /** Carries out a checked request against the device and sends its reply; never rejects. */
  async #perform(request: NbdRequest, exp: NbdExport): Promise<void> {
    const { device } = exp
    const { type, handle, offset, length } = request
    try {
      switch (type) {
        case NBD_CMD_READ: {
          const { reply, data } = readReply(handle, offset, length, this.#structured, this.#buffers)
          this.#hold(length)
          try {
            // A failed read is not given back to the pool: a piece of it may still be in flight.
            await device.read(offset, data)
          } catch (error) {
            this.#release(length)
            throw error
          }
          this.#send(reply, true, length) // held until the socket has taken it
          return
        }
        case NBD_CMD_WRITE:
          this.#hold(length)
          try {
            await device.write(offset, request.payload!)
            if (request.flags & NBD_CMD_FLAG_FUA) await device.flush()
          } finally {
            this.#release(length)
          }
          break
        case NBD_CMD_WRITE_ZEROES: {
          for (let done = 0; done < length; done += ZERO_PIECE_BYTES) {
            await device.write(offset + done, zeroPiece(Math.min(ZERO_PIECE_BYTES, length - done)))
          }
          if (request.flags & NBD_CMD_FLAG_FUA) await device.flush()
          break
        }
        case NBD_CMD_FLUSH:
          await device.flush()
          break
        case NBD_CMD_BLOCK_STATUS: {
          const reqOne = (request.flags & NBD_CMD_FLAG_REQ_ONE) !== 0
          this.#send(blockStatusReply(handle, this.#contexts.map((c) => ({ id: c.id, extents: statusExtents(device, c, offset, length, reqOne) }))), false)
          return
        }
        default: // NBD_CMD_CACHE: the range was checked; there is no cache to fill
      }
      this.#send(doneReply(handle, this.#structured, this.#buffers), true)
    } catch (cause) {
      this.#send(errorReply(handle, NBD_EIO, this.#structured, cause instanceof Error ? cause.message : String(cause)), false)
    } finally {
      this.#inFlight--
      this.#maybeResume()
      if (this.#inFlight === 0) for (const wake of this.#idle.splice(0)) wake()
    }
  }

  #pause(): void {
    if (this.#paused) return
    this.#paused = true
    this.#socket.pause()
  }

  #maybeResume(): void {
    if (!this.#paused || this.#inFlight > MAX_IN_FLIGHT / 2 || this.#held > MAX_HELD_BYTES / 2 || this.#socket.writableNeedDrain) return
    const budget = this.#budget
    if (budget !== undefined && this.#held > 0 && budget.used >= budget.limit / 2) {
      budget.whenRoom(this.#onRoom) // woken when the server's count falls below half
      return
    }
    this.#paused = false
    this.#socket.resume()
    this.#pump()
  }

  #whenIdle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /** A stream the server cannot follow: stop reading now, drop the client once in-flight work settles. */
  #hangUp(): void {
    this.#phase = 'closing'
    void this.#whenIdle().then(() => this.#endSocket())
  }

  /** Sends what is queued, then closes; a client that will not take it is dropped after LINGER_MS. */
  #endSocket(): void {
    if (this.#socket.destroyed) return
    this.#socket.pause() // nothing more is read from a connection that is ending
    this.#socket.end(() => this.#socket.destroy())
    const linger = setTimeout(() => this.#socket.destroy(), LINGER_MS).unref()
    this.#socket.once('close', () => clearTimeout(linger))
  }

  #onClose(): void {
    this.#phase = 'closed'
    this.#budget?.forget(this.#onRoom)
    // Replies the socket will never send give their bytes back now; requests still in flight
    // give theirs back as they finish (their replies find the socket gone).
    this.#replies?.abandon()
    const waiting = this.#waiting
    this.#waiting = undefined
    waiting?.reject(new ClientGone())
  }
}
