// test/fuzz/nbd-stream-judge.ts: an independent reading of the NBD spec that walks the bytes a
// client sent and, in lockstep, the bytes the server sent back: every option answered with its
// own option code and a final ACK or error, transmission entered exactly when it should, one
// well-formed reply per request (right handle, an NBD errno the request earns), nothing twice,
// nothing extra, and a hang-up exactly where the stream becomes unfollowable. Throws on a mismatch.
import * as P from '../../io/nbd/protocol.js'

export interface JudgedExport { readonly size: number; readonly readOnly: boolean }

/** A WRITE or WRITE_ZEROES the server had to accept: the only way a device may change. */
export interface AcceptedWrite { readonly export: string; readonly offset: number; readonly data: Buffer; acked: boolean }
/** A READ the server answered with data. */
export interface AnsweredRead { readonly export: string; readonly offset: number; readonly data: Buffer }

export interface Verdict {
  /** `incomplete`: the server owes more bytes (`atBoundary`: none of a reply is cut). */
  readonly state: 'incomplete' | 'complete'
  readonly atBoundary: boolean
  /** The server must hang up, or must wait for more input, or (`either`) may do both (a TLS layer given a record's start). */
  readonly closes: boolean | 'either'
  /** Where the client stream left the server: for the outcome counts. */
  readonly stop: string
  readonly export: string | undefined
  readonly writes: readonly AcceptedWrite[]
  readonly reads: readonly AnsweredRead[]
  /** Replies by outcome, e.g. `READ ok`, `WRITE 22`. */
  readonly replies: ReadonlyMap<string, number>
}

export class JudgeMismatch extends Error {}
class Incomplete { constructor(readonly atBoundary: boolean) {} }
/** Where the client's stream leaves the server; `tlsTail`: what follows is TLS records, not judged. */
class Stop { constructor(readonly why: string, readonly closes: boolean | 'either', readonly tlsTail = false) {} }

const NBD_ERRNOS = new Set([P.NBD_EPERM, P.NBD_EIO, P.NBD_ENOMEM, P.NBD_EINVAL, P.NBD_ENOSPC, P.NBD_EOVERFLOW, P.NBD_ENOTSUP, P.NBD_ESHUTDOWN])
const CONTEXTS = ['base:allocation', 'qemu:allocation-depth']
const COMMAND_NAMES: Record<number, string> = { 0: 'READ', 1: 'WRITE', 3: 'FLUSH', 4: 'TRIM', 5: 'CACHE', 6: 'WRITE_ZEROES', 7: 'BLOCK_STATUS' }

function fail(message: string): never { throw new JudgeMismatch(message) }

/** The server's bytes: `take` past the end is Incomplete, at a reply boundary or inside a reply. */
class ServerBytes {
  at = 0
  #replyStart = 0
  constructor(readonly bytes: Buffer) {}
  reply(): void { this.#replyStart = this.at }
  take(n: number): Buffer {
    if (this.at + n > this.bytes.length) throw new Incomplete(this.at === this.#replyStart && this.at === this.bytes.length)
    const out = this.bytes.subarray(this.at, this.at + n)
    this.at += n
    return out
  }
}

/** The client's bytes: `take` past the end means the server must wait for more. */
class ClientBytes {
  at = 0
  constructor(readonly bytes: Buffer) {}
  take(n: number, waiting: string): Buffer {
    if (this.at + n > this.bytes.length) throw new Stop(`waits: ${waiting}`, false)
    const out = this.bytes.subarray(this.at, this.at + n)
    this.at += n
    return out
  }
}

interface Request { readonly type: number; readonly flags: number; readonly handle: bigint; readonly offset: bigint; readonly length: number; readonly ok: boolean; readonly errors: ReadonlySet<number>; readonly write?: AcceptedWrite }

/** What the spec says a request earns: `ok` when it must (or may) succeed, and the errors it may get. */
function expectation(type: number, flags: number, offset: bigint, length: number, exp: JudgedExport, blockStatus: boolean): { ok: boolean; errors: Set<number> } {
  const errors = new Set<number>()
  let ok = true
  const refuse = (error: number) => { errors.add(error); ok = false }
  const allowed: Record<number, number> = {
    [P.NBD_CMD_READ]: 0, [P.NBD_CMD_WRITE]: P.NBD_CMD_FLAG_FUA, [P.NBD_CMD_FLUSH]: 0, [P.NBD_CMD_CACHE]: 0,
    [P.NBD_CMD_WRITE_ZEROES]: P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE, [P.NBD_CMD_BLOCK_STATUS]: P.NBD_CMD_FLAG_REQ_ONE,
  }
  // TRIM is not advertised, nor are DF and FAST_ZERO: the server may refuse them (EINVAL).
  if (!(type in allowed)) return { ok: false, errors: new Set([P.NBD_EINVAL]) }
  if ((flags & ~allowed[type]!) !== 0) refuse(P.NBD_EINVAL)
  if (type === P.NBD_CMD_FLUSH) {
    if (offset !== 0n || length !== 0) errors.add(P.NBD_EINVAL) // the spec wants zeros; refusing is allowed, so is ignoring
    return { ok, errors }
  }
  const writes = type === P.NBD_CMD_WRITE || type === P.NBD_CMD_WRITE_ZEROES
  if (type === P.NBD_CMD_BLOCK_STATUS && !blockStatus) refuse(P.NBD_EINVAL)
  if (writes && exp.readOnly) refuse(P.NBD_EPERM)
  if (length === 0) refuse(P.NBD_EINVAL)
  if (type === P.NBD_CMD_READ && length > P.MAX_BLOCK_BYTES) { refuse(P.NBD_EINVAL); errors.add(P.NBD_EOVERFLOW) }
  if (offset % 512n !== 0n || length % 512 !== 0) refuse(P.NBD_EINVAL)
  if (offset + BigInt(length) > BigInt(exp.size)) refuse(writes ? P.NBD_ENOSPC : P.NBD_EINVAL)
  return { ok, errors }
}

/** The server's TLS setting: none (STARTTLS refused), `on` (offered) or `require` (FORCEDTLS). */
export type JudgedTls = 'none' | 'on' | 'require'

/** Judges one connection: `client` is every byte sent, `server` every byte received so far. */
export function judge(client: Buffer, server: Buffer, exports: ReadonlyMap<string, JudgedExport>, tls: JudgedTls = 'none'): Verdict {
  const c = new ClientBytes(client)
  const s = new ServerBytes(server)
  const writes: AcceptedWrite[] = []
  const reads: AnsweredRead[] = []
  const replies = new Map<string, number>()
  let chosen: string | undefined
  let stop: Stop
  try {
    stop = walk()
  } catch (e) {
    if (e instanceof Incomplete) return { state: 'incomplete', atBoundary: e.atBoundary, closes: false, stop: 'incomplete', export: chosen, writes, reads, replies }
    throw e
  }
  if (s.at !== server.length && !stop.tlsTail) fail(`${server.length - s.at} bytes from the server after the last reply it owed (stopped: ${stop.why})`)
  return { state: 'complete', atBoundary: true, closes: stop.closes, stop: stop.why, export: chosen, writes, reads, replies }

  function walk(): Stop {
    s.reply()
    const greeting = s.take(18)
    if (greeting.readBigUInt64BE(0) !== P.NBD_MAGIC || greeting.readBigUInt64BE(8) !== P.NBD_OPTS_MAGIC) fail('bad greeting')
    if ((greeting.readUInt16BE(16) & P.NBD_FLAG_FIXED_NEWSTYLE) === 0) fail('greeting without FIXED_NEWSTYLE')
    try {
      const hs = handshake()
      chosen = hs.export
      return transmission(hs.export, hs.structured, hs.contextIds)
    } catch (e) {
      if (e instanceof Stop) return e
      throw e
    }
  }

  function handshake(): { export: string; structured: boolean; contextIds: ReadonlyMap<number, string> } {
    const flags = c.take(4, 'client flags').readUInt32BE(0)
    if ((flags & P.NBD_FLAG_C_FIXED_NEWSTYLE) === 0 || (flags & ~3) !== 0) throw new Stop('hangs up: client flags', true)
    const noZeroes = (flags & P.NBD_FLAG_C_NO_ZEROES) !== 0
    let structured = false
    let meta: { export: string; ids: Map<number, string> } | undefined
    for (;;) {
      const head = c.take(16, 'option header')
      if (head.readBigUInt64BE(0) !== P.NBD_OPTS_MAGIC) throw new Stop('hangs up: option magic', true)
      const option = head.readUInt32BE(8)
      const length = head.readUInt32BE(12)
      if (length > P.MAX_OPTION_BYTES) throw new Stop('hangs up: option too long', true)
      const data = c.take(length, 'option data')
      if (tls === 'require' && option !== P.NBD_OPT_STARTTLS && option !== P.NBD_OPT_ABORT) {
        // FORCEDTLS: nothing but STARTTLS and ABORT before TLS; EXPORT_NAME has no error reply.
        if (option === P.NBD_OPT_EXPORT_NAME) throw new Stop('hangs up: EXPORT_NAME before TLS', true)
        if (answer(option, 'error', []).final !== P.NBD_REP_ERR_TLS_REQD) fail(`option ${option} before TLS: not ERR_TLS_REQD`)
        continue
      }
      switch (option) {
        case P.NBD_OPT_EXPORT_NAME: {
          const name = data.toString('utf8')
          const exp = exports.get(name)
          if (exp === undefined) throw new Stop('hangs up: EXPORT_NAME unknown', true)
          s.reply()
          const reply = s.take(10 + (noZeroes ? 0 : P.EXPORT_NAME_PADDING))
          checkExportInfo(reply, 0, exp, 'EXPORT_NAME')
          if (!reply.subarray(10).every((b) => b === 0)) fail('EXPORT_NAME padding is not zeros')
          return { export: name, structured, contextIds: meta !== undefined && meta.export === name ? meta.ids : new Map() }
        }
        case P.NBD_OPT_STARTTLS:
          if (tls === 'none' || length !== 0) { answer(option, 'error', []); break }
          answer(option, 'ack', [])
          // This client never speaks TLS: bytes after the ACK are a protocol error or a failed TLS handshake.
          // Whether TLS fails at once or waits for a whole record depends on the bytes: either is fine.
          if (c.at < client.length) throw new Stop('hangs up: no TLS after STARTTLS', 'either', true)
          throw new Stop('waits: TLS handshake', false, true)
        case P.NBD_OPT_ABORT:
          answer(option, 'ack', [])
          throw new Stop('hangs up: ABORT', true)
        case P.NBD_OPT_LIST: {
          const r = answer(option, length === 0 ? 'ack' : 'error', [P.NBD_REP_SERVER])
          const names = r.interims.map((i) => i.data.toString('utf8', 4, 4 + i.data.readUInt32BE(0))).sort()
          if (r.final === P.NBD_REP_ACK && JSON.stringify(names) !== JSON.stringify([...exports.keys()].sort())) fail(`LIST named ${names.join(',')}`)
          break
        }
        case P.NBD_OPT_STRUCTURED_REPLY:
          if (answer(option, length === 0 ? 'ack' : 'error', []).final === P.NBD_REP_ACK) structured = true
          break
        case P.NBD_OPT_INFO:
        case P.NBD_OPT_GO: {
          const name = infoRequestName(data)
          const exp = name === undefined ? undefined : exports.get(name)
          const r = answer(option, exp === undefined ? 'error' : 'ack', [P.NBD_REP_INFO])
          if (exp === undefined) break
          const export_ = r.interims.find((i) => i.data.readUInt16BE(0) === P.NBD_INFO_EXPORT)
          if (export_ === undefined || export_.data.length !== 12) fail(`${option === P.NBD_OPT_GO ? 'GO' : 'INFO'} without NBD_INFO_EXPORT`)
          checkExportInfo(export_.data, 2, exp, 'NBD_INFO_EXPORT')
          if (option === P.NBD_OPT_GO) return { export: name!, structured, contextIds: meta !== undefined && meta.export === name ? meta.ids : new Map() }
          break
        }
        case P.NBD_OPT_LIST_META_CONTEXT:
        case P.NBD_OPT_SET_META_CONTEXT: {
          const request = structured ? metaRequest(data) : undefined
          const known = request !== undefined && exports.has(request.export)
          // A query without a namespace is malformed by the spec's grammar: refusing it is fine, so is ignoring it.
          const expect = !known ? 'error' : request.queries.some((q) => !q.includes(':')) ? 'either' : 'ack'
          const r = answer(option, expect, [P.NBD_REP_META_CONTEXT])
          const ids = new Map<number, string>()
          for (const i of r.interims) {
            const name = i.data.toString('utf8', 4)
            const matched = request!.queries.length === 0 ? option === P.NBD_OPT_LIST_META_CONTEXT : request!.queries.some((q) => q === name || (q.endsWith(':') && name.startsWith(q)))
            if (!CONTEXTS.includes(name) || !matched) fail(`meta context reply ${JSON.stringify(name)} for queries ${JSON.stringify(request!.queries)}`)
            if (option === P.NBD_OPT_SET_META_CONTEXT) {
              const id = i.data.readUInt32BE(0)
              if (ids.has(id)) fail(`SET_META_CONTEXT gave id ${id} twice`)
              ids.set(id, name)
            }
          }
          if (option === P.NBD_OPT_SET_META_CONTEXT) meta = r.final === P.NBD_REP_ACK ? { export: request!.export, ids } : undefined
          break
        }
        default: // unknown options: an error, and haggling goes on
          answer(option, 'error', [])
      }
    }
  }

  /** Option replies up to the final one: interims of the allowed types, then ACK or an error. */
  function answer(option: number, expect: 'ack' | 'error' | 'either', interimTypes: number[]): { final: number; interims: Array<{ type: number; data: Buffer }> } {
    const interims: Array<{ type: number; data: Buffer }> = []
    for (;;) {
      s.reply()
      const head = s.take(20)
      if (head.readBigUInt64BE(0) !== P.NBD_REP_MAGIC) fail(`option ${option}: reply magic 0x${head.readBigUInt64BE(0).toString(16)}`)
      if (head.readUInt32BE(8) !== option) fail(`option ${option} answered as option ${head.readUInt32BE(8)}`)
      const type = head.readUInt32BE(12)
      const data = s.take(head.readUInt32BE(16))
      if (type === P.NBD_REP_ACK || type >= 0x80000000) {
        const isError = type >= 0x80000000
        if (isError && (type < P.NBD_REP_ERR_UNSUP || type > P.NBD_REP_ERR_TOO_BIG)) fail(`option ${option}: unknown error type 0x${type.toString(16)}`)
        if (type === P.NBD_REP_ACK && data.length !== 0) fail(`option ${option}: ACK with data`)
        if ((expect === 'ack' && isError) || (expect === 'error' && !isError)) fail(`option ${option}: expected ${expect}, got 0x${type.toString(16)} ${data.toString('utf8')}`)
        if (isError && interims.length > 0) fail(`option ${option}: error after ${interims.length} interim replies`)
        return { final: type, interims }
      }
      if (!interimTypes.includes(type)) fail(`option ${option}: unexpected reply type ${type}`)
      interims.push({ type, data })
    }
  }

  function transmission(name: string, structured: boolean, contextIds: ReadonlyMap<number, string>): Stop {
    const exp = exports.get(name)!
    const outstanding: Request[] = []
    let stopped: Stop | undefined
    while (stopped === undefined) {
      let head: Buffer
      try {
        head = c.take(28, 'request header')
      } catch (e) {
        if (e instanceof Stop) { stopped = e; break }
        throw e
      }
      if (head.readUInt32BE(0) !== P.NBD_REQUEST_MAGIC) { stopped = new Stop('hangs up: request magic', true); break }
      const flags = head.readUInt16BE(4)
      const type = head.readUInt16BE(6)
      const handle = head.readBigUInt64BE(8)
      const offset = head.readBigUInt64BE(16)
      const length = head.readUInt32BE(24)
      if (type === P.NBD_CMD_DISC) { stopped = new Stop('hangs up: DISC', true); break }
      if (type === P.NBD_CMD_WRITE && length > P.MAX_BLOCK_BYTES) { stopped = new Stop('hangs up: WRITE over the maximum', true); break }
      let payload: Buffer | undefined
      if (type === P.NBD_CMD_WRITE) {
        try {
          payload = c.take(length, 'WRITE payload')
        } catch (e) {
          if (e instanceof Stop) { stopped = e; break }
          throw e
        }
      }
      const { ok, errors } = expectation(type, flags, offset, length, exp, structured && contextIds.size > 0)
      const write = ok && (type === P.NBD_CMD_WRITE || type === P.NBD_CMD_WRITE_ZEROES)
        ? { export: name, offset: Number(offset), data: payload ?? Buffer.alloc(length), acked: false }
        : undefined
      if (write !== undefined) writes.push(write)
      outstanding.push({ type, flags, handle, offset, length, ok, errors, ...(write === undefined ? {} : { write }) })
    }
    const pending = new Map<Request, { error?: number; data: Array<{ offset: bigint; bytes: Buffer }>; contexts: Set<number>; chunks: number }>()
    while (outstanding.length > 0 || pending.size > 0) {
      s.reply()
      const magic = s.take(4).readUInt32BE(0)
      if (magic === P.NBD_SIMPLE_REPLY_MAGIC) {
        const rest = s.take(12)
        const error = rest.readUInt32BE(0)
        const request = claim(rest.readBigUInt64BE(4), 'simple')
        if (structured && request.type === P.NBD_CMD_READ) fail('a simple reply to READ after structured replies were agreed')
        const data = error === 0 && request.type === P.NBD_CMD_READ ? s.take(request.length) : undefined
        settle(request, error, data === undefined ? [] : [{ offset: request.offset, bytes: data }], new Set())
      } else if (magic === P.NBD_STRUCTURED_REPLY_MAGIC) {
        if (!structured) fail('a structured reply without NBD_OPT_STRUCTURED_REPLY')
        const rest = s.take(16)
        const flags = rest.readUInt16BE(0)
        const type = rest.readUInt16BE(2)
        const handle = rest.readBigUInt64BE(4)
        const payload = s.take(rest.readUInt32BE(12))
        if ((flags & ~P.NBD_REPLY_FLAG_DONE) !== 0) fail(`structured reply flags 0x${flags.toString(16)}`)
        let request = [...pending.keys()].find((r) => r.handle === handle)
        if (request === undefined) {
          request = claim(handle, 'structured')
          pending.set(request, { data: [], contexts: new Set(), chunks: 0 })
        }
        const state = pending.get(request)!
        state.chunks++
        chunk(request, state, type, payload)
        if ((flags & P.NBD_REPLY_FLAG_DONE) !== 0) {
          pending.delete(request)
          settle(request, state.error ?? 0, state.data, state.contexts)
        }
      } else {
        fail(`reply magic 0x${magic.toString(16)}`)
      }
    }
    return stopped

    /** The request a reply answers: one sent, not yet answered. */
    function claim(handle: bigint, kind: string): Request {
      const i = outstanding.findIndex((r) => r.handle === handle)
      if (i < 0) fail(`${kind} reply to handle ${handle}, which has no request waiting (sent: ${JSON.stringify(outstanding.map((r) => `${r.handle}`))})`)
      return outstanding.splice(i, 1)[0]!
    }

    function chunk(request: Request, state: { error?: number; data: Array<{ offset: bigint; bytes: Buffer }>; contexts: Set<number> }, type: number, payload: Buffer): void {
      const end = request.offset + BigInt(request.length)
      switch (type) {
        case P.NBD_REPLY_TYPE_NONE:
          if (payload.length !== 0) fail('NONE chunk with a payload')
          break
        case P.NBD_REPLY_TYPE_OFFSET_DATA:
        case P.NBD_REPLY_TYPE_OFFSET_HOLE: {
          if (request.type !== P.NBD_CMD_READ || payload.length < (type === P.NBD_REPLY_TYPE_OFFSET_HOLE ? 12 : 9)) fail(`data chunk ${type} for command ${request.type}`)
          const offset = payload.readBigUInt64BE(0)
          const bytes = type === P.NBD_REPLY_TYPE_OFFSET_DATA ? payload.subarray(8) : Buffer.alloc(payload.readUInt32BE(8))
          if (offset < request.offset || offset + BigInt(bytes.length) > end) fail(`data chunk ${offset}+${bytes.length} outside the READ ${request.offset}+${request.length}`)
          state.data.push({ offset, bytes })
          break
        }
        case P.NBD_REPLY_TYPE_BLOCK_STATUS: {
          if (request.type !== P.NBD_CMD_BLOCK_STATUS || payload.length < 12 || (payload.length - 4) % 8 !== 0) fail(`BLOCK_STATUS chunk of ${payload.length} bytes for command ${request.type}`)
          const id = payload.readUInt32BE(0)
          if (!contextIds.has(id) || state.contexts.has(id)) fail(`BLOCK_STATUS chunk for context ${id} (selected ${[...contextIds.keys()]}, seen ${[...state.contexts]})`)
          state.contexts.add(id)
          const count = (payload.length - 4) / 8
          if ((request.flags & P.NBD_CMD_FLAG_REQ_ONE) !== 0 && count !== 1) fail(`REQ_ONE answered with ${count} descriptors`)
          let sum = 0n
          for (let k = 0; k < count; k++) {
            const length = payload.readUInt32BE(4 + 8 * k)
            if (length === 0) fail('a zero-length block status descriptor')
            if (contextIds.get(id) === 'base:allocation' && (payload.readUInt32BE(8 + 8 * k) & ~3) !== 0) fail('base:allocation flags beyond HOLE|ZERO')
            sum += BigInt(length)
          }
          if (request.offset + sum > BigInt(exp.size)) fail(`block status descriptors run past the export end (${request.offset}+${sum})`)
          break
        }
        case P.NBD_REPLY_TYPE_ERROR:
        case P.NBD_REPLY_TYPE_ERROR_OFFSET: {
          const fixed = type === P.NBD_REPLY_TYPE_ERROR ? 6 : 14
          if (payload.length < fixed || payload.readUInt16BE(4) + fixed !== payload.length) fail(`error chunk of ${payload.length} bytes with message length ${payload.length >= 6 ? payload.readUInt16BE(4) : '?'}`)
          state.error = payload.readUInt32BE(0)
          if (state.error === 0) fail('an error chunk with error 0')
          break
        }
        default:
          fail(`structured reply type ${type}`)
      }
    }

    function settle(request: Request, error: number, data: Array<{ offset: bigint; bytes: Buffer }>, contexts: Set<number>): void {
      const name = COMMAND_NAMES[request.type] ?? `command ${request.type}`
      replies.set(`${name} ${error === 0 ? 'ok' : error}`, (replies.get(`${name} ${error === 0 ? 'ok' : error}`) ?? 0) + 1)
      if (error !== 0) {
        if (!NBD_ERRNOS.has(error)) fail(`${name}: error ${error} is not an NBD errno`)
        if (!request.errors.has(error)) fail(`${name} ${request.offset}+${request.length} flags 0x${request.flags.toString(16)}: error ${error}, expected ${request.ok ? 'success' : ''} ${[...request.errors]}`)
        return
      }
      if (!request.ok) fail(`${name} ${request.offset}+${request.length} flags 0x${request.flags.toString(16)} succeeded; expected one of ${[...request.errors]}`)
      if (request.write !== undefined) request.write.acked = true
      if (request.type === P.NBD_CMD_READ) {
        const whole = Buffer.alloc(request.length)
        let covered = 0
        for (const d of data) {
          whole.set(d.bytes, Number(d.offset - request.offset))
          covered += d.bytes.length
        }
        if (covered !== request.length) fail(`READ of ${request.length} bytes answered with ${covered}`)
        reads.push({ export: chosen!, offset: Number(request.offset), data: whole })
      }
      if (request.type === P.NBD_CMD_BLOCK_STATUS && contexts.size !== contextIds.size) fail(`BLOCK_STATUS answered ${contexts.size} of ${contextIds.size} contexts`)
    }
  }
}

/** An INFO/GO payload's export name, or undefined when the payload is malformed. */
function infoRequestName(data: Buffer): string | undefined {
  if (data.length < 6) return undefined
  const nameLength = data.readUInt32BE(0)
  if (4 + nameLength + 2 > data.length) return undefined
  const count = data.readUInt16BE(4 + nameLength)
  if (data.length !== 4 + nameLength + 2 + 2 * count) return undefined
  return data.toString('utf8', 4, 4 + nameLength)
}

/** A LIST/SET_META_CONTEXT payload, or undefined when malformed. */
function metaRequest(data: Buffer): { export: string; queries: string[] } | undefined {
  if (data.length < 8) return undefined
  const nameLength = data.readUInt32BE(0)
  if (4 + nameLength + 4 > data.length) return undefined
  const count = data.readUInt32BE(4 + nameLength)
  const queries: string[] = []
  let at = 8 + nameLength
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return undefined
    const length = data.readUInt32BE(at)
    if (at + 4 + length > data.length) return undefined
    queries.push(data.toString('utf8', at + 4, at + 4 + length))
    at += 4 + length
  }
  return at === data.length ? { export: data.toString('utf8', 4, 4 + nameLength), queries } : undefined
}

/** Size (u64) and transmission flags (u16) at `at`, as the export really is. */
function checkExportInfo(bytes: Buffer, at: number, exp: JudgedExport, what: string): void {
  const size = bytes.readBigUInt64BE(at)
  const flags = bytes.readUInt16BE(at + 8)
  if (size !== BigInt(exp.size)) fail(`${what}: size ${size}, export has ${exp.size}`)
  if ((flags & P.NBD_FLAG_HAS_FLAGS) === 0) fail(`${what}: flags 0x${flags.toString(16)} without HAS_FLAGS`)
  if (((flags & P.NBD_FLAG_READ_ONLY) !== 0) !== exp.readOnly) fail(`${what}: READ_ONLY flag is ${(flags & P.NBD_FLAG_READ_ONLY) !== 0}, export readOnly ${exp.readOnly}`)
  if ((flags & P.NBD_FLAG_SEND_TRIM) !== 0) fail(`${what}: advertises TRIM, which the judge refuses`)
}

/**
 * Every write a stream could have made the server do, found without its replies (for a client
 * that lost them): each WRITE / WRITE_ZEROES header anywhere in the bytes with an aligned range
 * inside an export, with the payload that follows it, on every writable export.
 */
export function writesAnywhere(client: Buffer, exports: ReadonlyMap<string, JudgedExport>): AcceptedWrite[] {
  const found: AcceptedWrite[] = []
  for (let at = client.indexOf(MAGIC); at >= 0 && at + 28 <= client.length; at = client.indexOf(MAGIC, at + 1)) {
    const type = client.readUInt16BE(at + 6)
    const offset = client.readBigUInt64BE(at + 16)
    const length = client.readUInt32BE(at + 24)
    if (type !== P.NBD_CMD_WRITE && type !== P.NBD_CMD_WRITE_ZEROES) continue
    const data = type === P.NBD_CMD_WRITE ? client.subarray(at + 28, at + 28 + length) : Buffer.alloc(length)
    if (data.length !== length || offset % 512n !== 0n || length % 512 !== 0) continue
    for (const [name, exp] of exports) {
      if (!exp.readOnly && offset + BigInt(length) <= BigInt(exp.size)) found.push({ export: name, offset: Number(offset), data, acked: false })
    }
  }
  return found
}
const MAGIC = Buffer.from([0x25, 0x60, 0x95, 0x13])
