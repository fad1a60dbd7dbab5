// test/nbd/raw-client.ts: a byte-level NBD client for tests: it sends exactly what a test says
// (well-formed or not) and reads replies field by field, so malformed input can be tried.
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { ByteQueue } from '../../io/nbd/byte-queue.js'
import * as P from '../../io/nbd/protocol.js'
import { serveNbd, type NbdServer, type ServeNbdOptions } from '../../io/nbd/server.js'

export class RawClient {
  readonly #queue = new ByteQueue()
  #waiting: { n: number; resolve: (b: Buffer | undefined) => void } | undefined
  #ended = false
  readonly closed: Promise<void>

  private constructor(readonly socket: net.Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => { this.#queue.push(chunk); this.#wake() })
    socket.on('close', () => { this.#ended = true; this.#wake() })
  }

  /** A client over a socket already connected (e.g. a TLS socket wrapping another client's). */
  static over(socket: net.Socket): RawClient {
    return new RawClient(socket)
  }

  static connect(socketPath: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(socketPath, () => resolve(new RawClient(s)))
      s.once('error', reject)
    })
  }

  /** Exactly n bytes, or undefined if the server closed first. */
  read(n: number): Promise<Buffer | undefined> {
    const bytes = this.#queue.take(n)
    if (bytes !== undefined || this.#ended) return Promise.resolve(bytes)
    return new Promise((resolve) => { this.#waiting = { n, resolve } })
  }

  async must(n: number): Promise<Buffer> {
    const bytes = await this.read(n)
    if (bytes === undefined) throw new Error(`server closed while the test waited for ${n} bytes`)
    return bytes
  }

  write(bytes: Uint8Array): void { this.socket.write(bytes) }

  #wake(): void {
    const w = this.#waiting
    if (w === undefined) return
    const bytes = this.#queue.take(w.n)
    if (bytes === undefined && !this.#ended) return
    this.#waiting = undefined
    w.resolve(bytes)
  }

  /** Reads the greeting and checks it; sends client flags. */
  async greet(clientFlags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES): Promise<number> {
    const g = await this.must(18)
    if (g.readBigUInt64BE(0) !== P.NBD_MAGIC || g.readBigUInt64BE(8) !== P.NBD_OPTS_MAGIC) throw new Error('bad greeting')
    const flags = Buffer.alloc(4)
    flags.writeUInt32BE(clientFlags)
    this.write(flags)
    return g.readUInt16BE(16)
  }

  sendOption(option: number, data: Uint8Array = new Uint8Array(0)): void {
    this.write(optionBytes(option, data))
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const h = await this.must(20)
    if (h.readBigUInt64BE(0) !== P.NBD_REP_MAGIC) throw new Error('bad option reply magic')
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.must(h.readUInt32BE(16)) }
  }

  /** Greets, optionally agrees structured replies, and GOes to `name`; returns size and flags. */
  async open(name: string, structured = false): Promise<{ size: number; flags: number }> {
    await this.greet()
    if (structured) {
      this.sendOption(P.NBD_OPT_STRUCTURED_REPLY)
      const r = await this.optionReply()
      if (r.type !== P.NBD_REP_ACK) throw new Error('structured replies refused')
    }
    this.sendOption(P.NBD_OPT_GO, goData(name))
    let size = -1
    let flags = -1
    for (;;) {
      const r = await this.optionReply()
      if (r.type === P.NBD_REP_ACK) return { size, flags }
      if (r.type !== P.NBD_REP_INFO) throw new Error(`GO failed with reply type 0x${r.type.toString(16)}`)
      if (r.data.readUInt16BE(0) === P.NBD_INFO_EXPORT) {
        size = Number(r.data.readBigUInt64BE(2))
        flags = r.data.readUInt16BE(10)
      }
    }
  }

  request(type: number, handle: number, offset: number, length: number, flags = 0, payload?: Uint8Array): void {
    this.write(requestBytes(type, handle, offset, length, flags, payload))
  }

  /** A simple reply; `dataBytes` follow it when the error is 0. */
  async simpleReply(dataBytes = 0): Promise<{ error: number; handle: number; data?: Buffer } | undefined> {
    const h = await this.read(16)
    if (h === undefined) return undefined
    if (h.readUInt32BE(0) !== P.NBD_SIMPLE_REPLY_MAGIC) throw new Error(`bad simple reply magic 0x${h.readUInt32BE(0).toString(16)}`)
    const error = h.readUInt32BE(4)
    const handle = Number(h.readBigUInt64BE(8))
    return { error, handle, data: error === 0 && dataBytes > 0 ? await this.must(dataBytes) : undefined }
  }

  async structuredReply(): Promise<{ flags: number; type: number; handle: number; payload: Buffer }> {
    const h = await this.must(20)
    if (h.readUInt32BE(0) !== P.NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`bad structured reply magic 0x${h.readUInt32BE(0).toString(16)}`)
    return { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), handle: Number(h.readBigUInt64BE(8)), payload: await this.must(h.readUInt32BE(16)) }
  }

  destroy(): void { this.socket.destroy() }
}

export function optionBytes(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.alloc(16 + data.length)
  out.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 0)
  out.writeUInt32BE(option, 8)
  out.writeUInt32BE(data.length, 12)
  out.set(data, 16)
  return out
}

/** An NBD_OPT_GO / NBD_OPT_INFO payload naming `name`, with these information requests. */
export function goData(name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name, 'utf8')
  const out = Buffer.alloc(4 + n.length + 2 + 2 * infos.length)
  out.writeUInt32BE(n.length, 0)
  out.set(n, 4)
  out.writeUInt16BE(infos.length, 4 + n.length)
  infos.forEach((info, i) => out.writeUInt16BE(info, 6 + n.length + 2 * i))
  return out
}

export function requestBytes(type: number, handle: number, offset: number, length: number, flags = 0, payload?: Uint8Array, magic = P.NBD_REQUEST_MAGIC): Buffer {
  const out = Buffer.alloc(28 + (payload?.length ?? 0))
  out.writeUInt32BE(magic, 0)
  out.writeUInt16BE(flags, 4)
  out.writeUInt16BE(type, 6)
  out.writeBigUInt64BE(BigInt(handle), 8)
  out.writeBigUInt64BE(BigInt(offset), 16)
  out.writeUInt32BE(length, 24)
  if (payload) out.set(payload, 28)
  return out
}

/** A server on a fresh unix socket in a temp directory; `stop()` closes it and removes the directory. */
export async function startServer(exports: ServeNbdOptions['exports'], tls?: ServeNbdOptions['tls'],
  more: Omit<ServeNbdOptions, 'exports' | 'tls' | 'socket' | 'port'> = {}): Promise<{ server: NbdServer; socket: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-nbd-'))
  const socket = path.join(dir, 'nbd.sock')
  const server = await serveNbd({ ...more, exports, socket, ...(tls === undefined ? {} : { tls }) })
  return {
    server,
    socket,
    async stop() {
      await server.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** `length` bytes of a repeating pattern seeded by `seed`. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff
  return out
}
