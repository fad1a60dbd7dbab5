// io/nbd/requests.ts: the transmission phase's input. A streaming parser turns socket chunks
// into requests (28-byte header read in place, then a WRITE's payload, a view into the chunk
// when it lies in one), and `checkRequest` decides which requests the server refuses and with which error.

import type { ByteQueue } from './byte-queue.js'
import {
  MAX_BLOCK_BYTES,
  MIN_BLOCK_BYTES,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_REQUEST_MAGIC,
  REQUEST_HEADER_BYTES,
} from './protocol.js'

/** One request as the client sent it. */
export interface NbdRequest {
  readonly flags: number
  readonly type: number
  readonly handle: bigint
  /** Byte offset; a u64 beyond 2^53 arrives rounded but still beyond any export. */
  readonly offset: number
  readonly length: number
  /** A WRITE's data. */
  readonly payload?: Buffer
}

/** What the parser found: a request, a stream the server cannot follow, or (undefined) not enough bytes yet. */
export type ParseResult = { readonly kind: 'request'; readonly request: NbdRequest } | { readonly kind: 'fatal'; readonly reason: string } | undefined

/** A request whose payload may still be arriving; the parser fills `payload` in before handing it out. */
type Pending = { -readonly [K in keyof NbdRequest]: NbdRequest[K] }

/**
 * Reads requests from a ByteQueue, one at a time, keeping a header whose payload is still
 * arriving. A header is read in place from the socket's chunk (copied into one scratch buffer
 * only when it straddles two), and each request is one object, built once.
 */
export class RequestParser {
  readonly #queue: ByteQueue
  readonly #scratch = Buffer.allocUnsafe(REQUEST_HEADER_BYTES)
  #header: Pending | undefined

  constructor(queue: ByteQueue) {
    this.#queue = queue
  }

  next(): ParseResult {
    if (this.#header === undefined) {
      const queue = this.#queue
      let bytes = queue.contiguous(REQUEST_HEADER_BYTES)
      let at = 0
      if (bytes !== undefined) {
        at = queue.offset
        queue.skip(REQUEST_HEADER_BYTES)
      } else {
        if (!queue.takeInto(this.#scratch)) return undefined
        bytes = this.#scratch
      }
      const magic = bytes.readUInt32BE(at)
      if (magic !== NBD_REQUEST_MAGIC) return { kind: 'fatal', reason: `request magic 0x${magic.toString(16)} is not NBD_REQUEST_MAGIC` }
      const header: Pending = {
        flags: bytes.readUInt16BE(at + 4),
        type: bytes.readUInt16BE(at + 6),
        handle: bytes.readBigUInt64BE(at + 8),
        // hi·2^32 is exact, so the sum rounds once, as Number(u64) would, without a BigInt.
        offset: bytes.readUInt32BE(at + 16) * 2 ** 32 + bytes.readUInt32BE(at + 20),
        length: bytes.readUInt32BE(at + 24),
        payload: undefined,
      }
      // A payload this long cannot be skipped sensibly: the spec lets the server disconnect.
      if (header.type === NBD_CMD_WRITE && header.length > MAX_BLOCK_BYTES) {
        return { kind: 'fatal', reason: `WRITE of ${header.length} bytes is over the maximum block size ${MAX_BLOCK_BYTES}` }
      }
      if (header.type !== NBD_CMD_WRITE) return { kind: 'request', request: header }
      this.#header = header
    }
    const payload = this.#queue.take(this.#header.length)
    if (payload === undefined) return undefined
    const request = this.#header
    request.payload = payload
    this.#header = undefined
    return { kind: 'request', request }
  }
}

/** The export facts a request is checked against. */
export interface RequestLimits {
  readonly size: number
  readonly readOnly: boolean
  /** Structured replies were agreed and at least one meta context selected for this export. */
  readonly blockStatus?: boolean
}

const ALLOWED_FLAGS: ReadonlyMap<number, number> = new Map([
  [NBD_CMD_READ, 0],
  [NBD_CMD_WRITE, NBD_CMD_FLAG_FUA],
  [NBD_CMD_DISC, 0],
  [NBD_CMD_FLUSH, 0],
  [NBD_CMD_CACHE, 0],
  [NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE],
  [NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE],
])

/**
 * The NBD error to refuse `request` with, or undefined when the server should carry it out.
 * Unknown commands (TRIM included: not advertised) and unknown flags are EINVAL, and so is
 * BLOCK_STATUS unless a meta context was selected (which needs structured replies); writes to a read-only export EPERM; offsets and lengths must be multiples of 512;
 * a range past the end is ENOSPC for writes and EINVAL otherwise (spec "Request types").
 */
export function checkRequest(request: NbdRequest, limits: RequestLimits): { error: number; message: string } | undefined {
  const { type, flags, offset, length } = request
  const allowed = ALLOWED_FLAGS.get(type)
  if (allowed === undefined) return { error: NBD_EINVAL, message: `command ${type} is not supported` }
  if ((flags & ~allowed) !== 0) return { error: NBD_EINVAL, message: `flags 0x${flags.toString(16)} are not valid for command ${type}` }
  if (type === NBD_CMD_FLUSH || type === NBD_CMD_DISC) return undefined
  if (type === NBD_CMD_BLOCK_STATUS && limits.blockStatus !== true) return { error: NBD_EINVAL, message: 'BLOCK_STATUS needs structured replies and a meta context selected with NBD_OPT_SET_META_CONTEXT' }
  const writes = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES
  if (writes && limits.readOnly) return { error: NBD_EPERM, message: 'the export is read-only' }
  if (length === 0) return { error: NBD_EINVAL, message: 'length 0' }
  if (type === NBD_CMD_READ && length > MAX_BLOCK_BYTES) return { error: NBD_EINVAL, message: `length ${length} is over the maximum block size ${MAX_BLOCK_BYTES}` }
  if (offset % MIN_BLOCK_BYTES !== 0 || length % MIN_BLOCK_BYTES !== 0) {
    return { error: NBD_EINVAL, message: `offset ${offset} and length ${length} must be multiples of ${MIN_BLOCK_BYTES}` }
  }
  if (offset + length > limits.size) {
    return { error: writes ? NBD_ENOSPC : NBD_EINVAL, message: `offset ${offset} + length ${length} is past the end of the export (${limits.size} bytes)` }
  }
  return undefined
}
