// io/nbd/handshake.ts: the fixed newstyle handshake (spec "Newstyle negotiation"): greeting,
// client flags, then options until NBD_OPT_GO or NBD_OPT_EXPORT_NAME picks an export.
// Supports GO, INFO, LIST, ABORT, STRUCTURED_REPLY, EXPORT_NAME, LIST_META_CONTEXT,
// SET_META_CONTEXT and STARTTLS (when TLS is configured; `require` refuses all but STARTTLS
// and ABORT before it); other options get ERR_UNSUP.

import type { BlockDevice } from '../block-device.js'
import { listContexts, parseMetaContextRequest, selectContexts, type MetaContext } from './meta-context.js'
import { optionReply } from './replies.js'
import type { NbdTlsMode } from './tls.js'
import {
  EXPORT_NAME_PADDING,
  MAX_BLOCK_BYTES,
  MAX_NAME_BYTES,
  MAX_OPTION_BYTES,
  MIN_BLOCK_BYTES,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTS_MAGIC,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  PREFERRED_BLOCK_BYTES,
} from './protocol.js'

/** One export as the server serves it. */
export interface NbdExport {
  readonly name: string
  readonly device: BlockDevice
  readonly readOnly: boolean
}

/**
 * What the handshake needs from the connection: exact-length reads (rejecting once the client
 * is gone) and writes; and, when TLS is configured, its mode and `startTls`, which swaps the
 * socket for a TLS one (after STARTTLS's ACK) and rejects when that fails.
 */
export interface HandshakeIo {
  read(n: number): Promise<Buffer>
  write(bytes: Uint8Array): void
  readonly tls?: { readonly mode: NbdTlsMode; startTls(): Promise<void> }
}

/**
 * The handshake's outcome: an export to serve, or the reason the connection ends. `contexts`
 * are the metadata contexts BLOCK_STATUS reports: those of the last SET_META_CONTEXT, if it
 * named the export chosen, else none.
 */
export type HandshakeResult =
  | { readonly kind: 'transmission'; readonly export: NbdExport; readonly structured: boolean; readonly contexts: readonly MetaContext[] }
  | { readonly kind: 'end'; readonly reason: string }

/** The transmission flags the server advertises for `exp`. */
export function transmissionFlags(exp: NbdExport): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE
  if (exp.readOnly) flags |= NBD_FLAG_READ_ONLY
  else flags |= NBD_FLAG_SEND_WRITE_ZEROES
  return flags
}

/** NBD_INFO_EXPORT: size and transmission flags. */
function infoExport(exp: NbdExport): Buffer {
  const out = Buffer.allocUnsafe(12)
  out.writeUInt16BE(NBD_INFO_EXPORT, 0)
  out.writeBigUInt64BE(BigInt(exp.device.size), 2)
  out.writeUInt16BE(transmissionFlags(exp), 10)
  return out
}

/** NBD_INFO_BLOCK_SIZE: 512 minimum (the BlockDevice rule), 4096 preferred, 32 MiB maximum. */
function infoBlockSize(): Buffer {
  const out = Buffer.allocUnsafe(14)
  out.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0)
  out.writeUInt32BE(MIN_BLOCK_BYTES, 2)
  out.writeUInt32BE(PREFERRED_BLOCK_BYTES, 6)
  out.writeUInt32BE(MAX_BLOCK_BYTES, 10)
  return out
}

function errorText(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, Buffer.from(message, 'utf8'))
}

/** NBD_REP_META_CONTEXT: context id, then its name. */
function metaContextReply(option: number, id: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8')
  const data = Buffer.allocUnsafe(4 + bytes.length)
  data.writeUInt32BE(id, 0)
  data.set(bytes, 4)
  return optionReply(option, NBD_REP_META_CONTEXT, data)
}

/**
 * Answers LIST_META_CONTEXT or SET_META_CONTEXT; returns SET's selection (undefined for
 * LIST or a failed SET). Both need structured replies, as BLOCK_STATUS replies are structured.
 */
function metaContextOption(option: number, data: Buffer, structured: boolean, exports: ReadonlyMap<string, NbdExport>, io: HandshakeIo): { exportName: string; selected: MetaContext[] } | undefined {
  if (!structured) {
    io.write(errorText(option, NBD_REP_ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY before meta contexts'))
    return undefined
  }
  const request = parseMetaContextRequest(data)
  if (typeof request === 'string') {
    io.write(errorText(option, NBD_REP_ERR_INVALID, request))
    return undefined
  }
  if (!exports.has(request.exportName)) {
    io.write(errorText(option, NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(request.exportName)}`))
    return undefined
  }
  if (option === NBD_OPT_LIST_META_CONTEXT) {
    // The spec reserves the id in LIST replies: 0.
    for (const context of listContexts(request.queries)) io.write(metaContextReply(option, 0, context.name))
    io.write(optionReply(option, NBD_REP_ACK))
    return undefined
  }
  const selected = selectContexts(request.queries)
  for (const context of selected) io.write(metaContextReply(option, context.id, context.name))
  io.write(optionReply(option, NBD_REP_ACK))
  return { exportName: request.exportName, selected }
}

/** The export an NBD_OPT_INFO/GO payload names, or the error reply it earns. */
function parseInfoRequest(data: Buffer, exports: ReadonlyMap<string, NbdExport>): { export: NbdExport } | { type: number; message: string } {
  if (data.length < 6) return { type: NBD_REP_ERR_INVALID, message: 'option payload too short' }
  const nameLength = data.readUInt32BE(0)
  if (nameLength > MAX_NAME_BYTES || 4 + nameLength + 2 > data.length) return { type: NBD_REP_ERR_INVALID, message: 'export name length is wrong' }
  const requests = data.readUInt16BE(4 + nameLength)
  if (data.length !== 4 + nameLength + 2 + 2 * requests) return { type: NBD_REP_ERR_INVALID, message: 'option length does not match its information requests' }
  const name = data.toString('utf8', 4, 4 + nameLength)
  const exp = exports.get(name)
  if (exp === undefined) return { type: NBD_REP_ERR_UNKNOWN, message: `no export named ${JSON.stringify(name)}` }
  return { export: exp }
}

/**
 * Runs the server's side of the handshake. Resolves with the chosen export, or with `end`
 * when the client aborted, broke the protocol or named an unknown export via EXPORT_NAME;
 * rejects when `io.read` does (the client went away).
 */
export async function negotiate(io: HandshakeIo, exports: ReadonlyMap<string, NbdExport>): Promise<HandshakeResult> {
  const greeting = Buffer.allocUnsafe(18)
  greeting.writeBigUInt64BE(NBD_MAGIC, 0)
  greeting.writeBigUInt64BE(NBD_OPTS_MAGIC, 8)
  greeting.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16)
  io.write(greeting)

  const clientFlags = (await io.read(4)).readUInt32BE(0)
  if ((clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) return { kind: 'end', reason: 'client does not speak fixed newstyle' }
  if ((clientFlags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) return { kind: 'end', reason: `unknown client flags 0x${clientFlags.toString(16)}` }
  const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0
  let structured = false
  let meta: { exportName: string; selected: MetaContext[] } | undefined
  let secure = false // TLS is up
  const contextsFor = (exp: NbdExport) => (meta !== undefined && meta.exportName === exp.name ? meta.selected : [])

  for (;;) {
    const head = await io.read(16)
    if (head.readBigUInt64BE(0) !== NBD_OPTS_MAGIC) return { kind: 'end', reason: 'option without IHAVEOPT magic' }
    const option = head.readUInt32BE(8)
    const length = head.readUInt32BE(12)
    if (length > MAX_OPTION_BYTES) return { kind: 'end', reason: `option ${option} of ${length} bytes is too long` }
    const data = await io.read(length)

    if (io.tls?.mode === 'require' && !secure && option !== NBD_OPT_STARTTLS && option !== NBD_OPT_ABORT) {
      // FORCEDTLS: nothing about the exports before TLS. EXPORT_NAME cannot be refused, only hung up on.
      if (option === NBD_OPT_EXPORT_NAME) return { kind: 'end', reason: 'EXPORT_NAME before TLS, which is required' }
      io.write(errorText(option, NBD_REP_ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first'))
      continue
    }

    switch (option) {
      case NBD_OPT_STARTTLS: {
        if (io.tls === undefined) { io.write(errorText(option, NBD_REP_ERR_POLICY, 'TLS is not configured on this server')); break }
        if (secure) { io.write(errorText(option, NBD_REP_ERR_INVALID, 'TLS is already running')); break }
        if (length !== 0) { io.write(errorText(option, NBD_REP_ERR_INVALID, 'STARTTLS takes no data')); break }
        io.write(optionReply(option, NBD_REP_ACK))
        try {
          await io.tls.startTls()
        } catch (cause) {
          return { kind: 'end', reason: `TLS handshake failed: ${cause instanceof Error ? cause.message : String(cause)}` }
        }
        // Haggling starts over inside TLS (no new greeting); nothing agreed in plain text carries over.
        secure = true
        structured = false
        meta = undefined
        break
      }
      case NBD_OPT_EXPORT_NAME: {
        const exp = exports.get(data.toString('utf8'))
        // This option has no error reply: the spec's answer to an unknown name is to disconnect.
        if (exp === undefined) return { kind: 'end', reason: 'EXPORT_NAME of an unknown export' }
        const reply = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_PADDING))
        reply.writeBigUInt64BE(BigInt(exp.device.size), 0)
        reply.writeUInt16BE(transmissionFlags(exp), 8)
        io.write(reply)
        return { kind: 'transmission', export: exp, structured, contexts: contextsFor(exp) }
      }
      case NBD_OPT_ABORT:
        io.write(optionReply(option, NBD_REP_ACK))
        return { kind: 'end', reason: 'client aborted' }
      case NBD_OPT_LIST: {
        if (length !== 0) { io.write(errorText(option, NBD_REP_ERR_INVALID, 'LIST takes no data')); break }
        for (const name of exports.keys()) {
          const bytes = Buffer.from(name, 'utf8')
          const entry = Buffer.allocUnsafe(4 + bytes.length)
          entry.writeUInt32BE(bytes.length, 0)
          entry.set(bytes, 4)
          io.write(optionReply(option, NBD_REP_SERVER, entry))
        }
        io.write(optionReply(option, NBD_REP_ACK))
        break
      }
      case NBD_OPT_STRUCTURED_REPLY:
        if (length !== 0) { io.write(errorText(option, NBD_REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data')); break }
        structured = true
        io.write(optionReply(option, NBD_REP_ACK))
        break
      case NBD_OPT_INFO:
      case NBD_OPT_GO: {
        const found = parseInfoRequest(data, exports)
        if (!('export' in found)) { io.write(errorText(option, found.type, found.message)); break }
        // Size and flags always; block sizes always too, so clients know the 512-byte rule.
        io.write(optionReply(option, NBD_REP_INFO, infoExport(found.export)))
        io.write(optionReply(option, NBD_REP_INFO, infoBlockSize()))
        io.write(optionReply(option, NBD_REP_ACK))
        if (option === NBD_OPT_GO) return { kind: 'transmission', export: found.export, structured, contexts: contextsFor(found.export) }
        break
      }
      case NBD_OPT_LIST_META_CONTEXT:
        metaContextOption(option, data, structured, exports, io)
        break
      case NBD_OPT_SET_META_CONTEXT:
        // SET replaces the selection even when it fails (spec).
        meta = metaContextOption(option, data, structured, exports, io)
        break
      default:
        io.write(errorText(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`))
    }
  }
}
