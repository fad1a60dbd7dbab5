// io/nbd/replies.ts: the bytes the server sends: option replies during the handshake, then
// simple replies, or structured replies (NONE, OFFSET_DATA, BLOCK_STATUS, ERROR) once
// NBD_OPT_STRUCTURED_REPLY was agreed (spec "Transmission phase"). Pure builders; nothing here touches a socket.

import {
  NBD_REP_MAGIC,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  SIMPLE_REPLY_BYTES,
  STRUCTURED_REPLY_HEADER_BYTES,
} from './protocol.js'

/** An option reply: magic, option, reply type, length, data. */
export function optionReply(option: number, type: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.allocUnsafe(20 + data.length)
  out.writeBigUInt64BE(NBD_REP_MAGIC, 0)
  out.writeUInt32BE(option, 8)
  out.writeUInt32BE(type >>> 0, 12)
  out.writeUInt32BE(data.length, 16)
  out.set(data, 20)
  return out
}

/** A simple reply with no data (`error` 0 for success). */
export function simpleReply(handle: bigint, error: number): Buffer {
  const out = Buffer.allocUnsafe(SIMPLE_REPLY_BYTES)
  writeSimpleHeader(out, handle, error)
  return out
}

function writeSimpleHeader(out: Buffer, handle: bigint, error: number): void {
  out.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0)
  out.writeUInt32BE(error, 4)
  out.writeBigUInt64BE(handle, 8)
}

function structuredHeader(out: Buffer, flags: number, type: number, handle: bigint, length: number): void {
  out.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0)
  out.writeUInt16BE(flags, 4)
  out.writeUInt16BE(type, 6)
  out.writeBigUInt64BE(handle, 8)
  out.writeUInt32BE(length, 16)
}

/** The final structured chunk of a successful request that carries no data. */
export function structuredNone(handle: bigint): Buffer {
  const out = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_BYTES)
  structuredHeader(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, handle, 0)
  return out
}

/** The final structured chunk of a failed request: error value and a short message. */
export function structuredError(handle: bigint, error: number, message: string): Buffer {
  const text = Buffer.from(message.slice(0, 200), 'utf8')
  const out = Buffer.allocUnsafe(STRUCTURED_REPLY_HEADER_BYTES + 6 + text.length)
  structuredHeader(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, 6 + text.length)
  out.writeUInt32BE(error, 20)
  out.writeUInt16BE(text.length, 24)
  out.set(text, 26)
  return out
}

/** The reply to a request that failed with `error`, in the form the connection agreed on. */
export function errorReply(handle: bigint, error: number, structured: boolean, message: string): Buffer {
  return structured ? structuredError(handle, error, message) : simpleReply(handle, error)
}

/** The reply to a successful request without data; in a buffer from `buffers` (a connection's pool) when given. */
export function doneReply(handle: bigint, structured: boolean, buffers?: ReplyBuffers): Buffer {
  if (buffers === undefined) return structured ? structuredNone(handle) : simpleReply(handle, 0)
  const out = buffers.acquire(structured ? STRUCTURED_REPLY_HEADER_BYTES : SIMPLE_REPLY_BYTES)
  if (structured) structuredHeader(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, handle, 0)
  else writeSimpleHeader(out, handle, 0)
  return out
}

/** Where a reply builder takes its buffer from (a BufferPool); the builder overwrites every byte. */
export interface ReplyBuffers {
  acquire(size: number): Buffer
}

/**
 * A whole successful READ reply with its header written and room for the data: the device
 * reads straight into `data`, and `reply` goes to the socket in one write (no copy).
 * A new buffer is zero-filled, so a device that fails to fill it can never leak old memory;
 * one from `buffers` (a connection's own pool) can hold only what that client was sent before.
 */
export function readReply(handle: bigint, offset: number, length: number, structured: boolean, buffers?: ReplyBuffers): { reply: Buffer; data: Buffer } {
  const start = structured ? STRUCTURED_REPLY_HEADER_BYTES + 8 : SIMPLE_REPLY_BYTES
  const reply = buffers === undefined ? Buffer.alloc(start + length) : buffers.acquire(start + length)
  if (structured) {
    structuredHeader(reply, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, handle, 8 + length)
    // The offset as two u32s: it was checked against the export size, so it is a safe integer.
    reply.writeUInt32BE(Math.floor(offset / 2 ** 32), STRUCTURED_REPLY_HEADER_BYTES)
    reply.writeUInt32BE(offset >>> 0, STRUCTURED_REPLY_HEADER_BYTES + 4)
  } else {
    writeSimpleHeader(reply, handle, 0)
  }
  return { reply, data: reply.subarray(start) }
}

/**
 * A successful BLOCK_STATUS reply: one NBD_REPLY_TYPE_BLOCK_STATUS chunk per context (context
 * id, then length and flags per descriptor), DONE on the last; one buffer, so the chunks of
 * one request are never interleaved with another's.
 */
export function blockStatusReply(handle: bigint, chunks: ReadonlyArray<{ readonly id: number; readonly extents: ReadonlyArray<{ readonly length: number; readonly flags: number }> }>): Buffer {
  const sizes = chunks.map((c) => STRUCTURED_REPLY_HEADER_BYTES + 4 + 8 * c.extents.length)
  const out = Buffer.allocUnsafe(sizes.reduce((a, b) => a + b, 0))
  let at = 0
  chunks.forEach((chunk, i) => {
    const head = out.subarray(at)
    structuredHeader(head, i === chunks.length - 1 ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_BLOCK_STATUS, handle, sizes[i]! - STRUCTURED_REPLY_HEADER_BYTES)
    head.writeUInt32BE(chunk.id, STRUCTURED_REPLY_HEADER_BYTES)
    chunk.extents.forEach((e, j) => {
      head.writeUInt32BE(e.length, STRUCTURED_REPLY_HEADER_BYTES + 4 + 8 * j)
      head.writeUInt32BE(e.flags, STRUCTURED_REPLY_HEADER_BYTES + 8 + 8 * j)
    })
    at += sizes[i]!
  })
  return out
}
