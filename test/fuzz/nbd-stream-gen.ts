// test/fuzz/nbd-stream-gen.ts: fast-check generators of client byte streams for the NBD server:
// a plan (client flags, options with valid or broken payloads, a GO/EXPORT_NAME/ABORT, then
// requests with random flags, handles, offsets and lengths), byte-level mutations of the built
// stream, and how the bytes are cut into socket writes.
import fc from 'fast-check'
import * as P from '../../io/nbd/protocol.js'
import { goData, optionBytes, pattern, requestBytes } from '../nbd/raw-client.js'

/** The exports every fuzz server serves (name → size), see nbd-streams.property.test.ts. */
export const EXPORT_NAMES = ['disk', 'ro', 'origin', 'snap'] as const
export const EXPORT_BYTES = 256 * 1024

const NAMES = [...EXPORT_NAMES, 'nope', '']
const QUERIES = ['base:allocation', 'qemu:allocation-depth', 'base:', 'qemu:', 'x:y', 'nonamespace']

/** How an option's payload is spoiled (valid keeps it as built). */
type PayloadDamage = 'valid' | 'truncate' | 'extend' | 'garbage' | 'length-field'

export interface OptionPlan {
  readonly option: number
  readonly name: string
  readonly queries: readonly string[]
  readonly infos: readonly number[]
  readonly damage: PayloadDamage
  readonly garbage: readonly number[]
}

export interface RequestPlan {
  readonly type: number
  readonly flags: number
  readonly handle: bigint
  readonly offset: bigint
  readonly length: number
  readonly dataSeed: number
}

export type Mutation =
  | { readonly kind: 'flip'; readonly at: Position; readonly bit: number }
  | { readonly kind: 'set'; readonly at: Position; readonly byte: number }
  | { readonly kind: 'truncate'; readonly at: Position }
  | { readonly kind: 'insert'; readonly at: Position; readonly bytes: readonly number[] }
  | { readonly kind: 'delete'; readonly at: Position; readonly count: number }
  | { readonly kind: 'splice'; readonly at: Position; readonly from: Position; readonly count: number }
  | { readonly kind: 'garbage'; readonly at: Position; readonly bytes: readonly number[] }

/** A byte position: a fraction of the stream, or a few bytes past one of its field boundaries. */
export type Position = { readonly fraction: number } | { readonly boundary: number; readonly delta: number }

export type Chunking =
  | { readonly kind: 'whole' }
  | { readonly kind: 'bytes'; readonly first: number }
  | { readonly kind: 'cuts'; readonly at: readonly Position[] }
  | { readonly kind: 'boundaries'; readonly delta: number }

export interface StreamPlan {
  /** Which server: without TLS, with TLS offered, or with TLS required (PSK; this client never speaks TLS). */
  readonly tls: 'none' | 'on' | 'require'
  readonly clientFlags: number
  readonly options: readonly OptionPlan[]
  readonly finish: 'go' | 'export-name' | 'abort' | 'none'
  readonly exportName: string
  readonly requests: readonly RequestPlan[]
  readonly mutations: readonly Mutation[]
  readonly chunking: Chunking
  /** Read the greeting before sending anything (a polite client) or fire at once. */
  readonly awaitGreeting: boolean
  /** Half-close the socket after the last byte (the server may then drop replies still owed). */
  readonly endAfter: boolean
}

const u16 = fc.integer({ min: 0, max: 0xffff })
const byte = fc.integer({ min: 0, max: 255 })

// Unbiased: fast-check's bias towards small values would aim most mutations at the client flags.
const position: fc.Arbitrary<Position> = fc.noBias(fc.oneof(
  fc.record({ fraction: fc.integer({ min: 0, max: 999_999 }).map((ppm) => ppm / 1e6) }), // fc.double is uniform over doubles, nearly all tiny
  fc.record({ boundary: fc.nat({ max: 1000 }), delta: fc.integer({ min: 0, max: 31 }) }),
))

const optionPlan: fc.Arbitrary<OptionPlan> = fc.record({
  option: fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(P.NBD_OPT_INFO, P.NBD_OPT_LIST, P.NBD_OPT_STRUCTURED_REPLY, P.NBD_OPT_SET_META_CONTEXT, P.NBD_OPT_LIST_META_CONTEXT, P.NBD_OPT_STARTTLS) },
    { weight: 1, arbitrary: fc.constantFrom(P.NBD_OPT_PEEK_EXPORT, P.NBD_OPT_EXTENDED_HEADERS, 0, 0x7fffffff, 0xffffffff) },
  ),
  name: fc.constantFrom(...NAMES),
  queries: fc.array(fc.constantFrom(...QUERIES), { maxLength: 3 }),
  infos: fc.array(fc.constantFrom(P.NBD_INFO_EXPORT, P.NBD_INFO_NAME, P.NBD_INFO_BLOCK_SIZE, 0xffff), { maxLength: 3 }),
  damage: fc.oneof({ weight: 8, arbitrary: fc.constant<PayloadDamage>('valid') }, { weight: 1, arbitrary: fc.constantFrom<PayloadDamage>('truncate', 'extend', 'garbage', 'length-field') }),
  garbage: fc.array(byte, { minLength: 1, maxLength: 12 }),
})

const SECTOR = 512
const offsetArb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0, max: EXPORT_BYTES / SECTOR - 1 }).map((s) => BigInt(s * SECTOR)) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 16 }).map((s) => BigInt(EXPORT_BYTES - s * SECTOR)) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: EXPORT_BYTES + 4096 }).map(BigInt) },
  { weight: 1, arbitrary: fc.constantFrom(BigInt(EXPORT_BYTES), 2n ** 53n, 2n ** 63n, 2n ** 64n - 512n, 2n ** 64n - 1n, 2n ** 64n - 2048n) },
)
const lengthArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 1, max: 16 }).map((s) => s * SECTOR) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 511, 513, EXPORT_BYTES, EXPORT_BYTES + SECTOR, P.MAX_BLOCK_BYTES, P.MAX_BLOCK_BYTES + SECTOR, 2 ** 32 - 512, 2 ** 32 - 1) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 70_000 }) },
)
const commandArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(P.NBD_CMD_READ, P.NBD_CMD_WRITE) },
  { weight: 4, arbitrary: fc.constantFrom(P.NBD_CMD_FLUSH, P.NBD_CMD_TRIM, P.NBD_CMD_CACHE, P.NBD_CMD_WRITE_ZEROES, P.NBD_CMD_BLOCK_STATUS) },
  { weight: 1, arbitrary: fc.oneof(fc.constantFrom(P.NBD_CMD_DISC, 8, 9), u16) },
)
const flagsArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.constantFrom(P.NBD_CMD_FLAG_FUA, P.NBD_CMD_FLAG_NO_HOLE, P.NBD_CMD_FLAG_REQ_ONE, P.NBD_CMD_FLAG_DF, P.NBD_CMD_FLAG_FAST_ZERO, P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE) },
  { weight: 1, arbitrary: u16 },
)

const requestsArb: fc.Arbitrary<RequestPlan[]> = fc.array(fc.record({
  type: commandArb,
  flags: flagsArb,
  handle: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  offset: offsetArb,
  length: lengthArb,
  dataSeed: fc.nat({ max: 1 << 20 }),
}), { maxLength: 14 }).map((requests) => requests.map((r, i) => ({
  ...r,
  // Distinct handles in the plan (a client must not reuse one in flight); mutations may still collide them.
  handle: (r.handle & ~0xffn) | BigInt(i),
})))

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: position, byte }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.array(byte, { minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('splice' as const), at: position, from: position, count: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('garbage' as const), at: position, bytes: fc.array(byte, { minLength: 1, maxLength: 64 }) }),
)

const chunkingArb: fc.Arbitrary<Chunking> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'whole' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bytes' as const), first: fc.integer({ min: 1, max: 400 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('cuts' as const), at: fc.array(position, { minLength: 1, maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('boundaries' as const), delta: fc.integer({ min: 0, max: 27 }) }) },
)

/** Streams: mostly well-formed handshakes reaching transmission, a third of them left unmutated. */
export const streamPlan: fc.Arbitrary<StreamPlan> = fc.record({
  tls: fc.oneof({ weight: 6, arbitrary: fc.constant('none' as const) }, { weight: 2, arbitrary: fc.constant('on' as const) }, { weight: 1, arbitrary: fc.constant('require' as const) }),
  clientFlags: fc.oneof(
    { weight: 10, arbitrary: fc.constant(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES) },
    { weight: 3, arbitrary: fc.constant(P.NBD_FLAG_C_FIXED_NEWSTYLE) },
    { weight: 1, arbitrary: fc.constantFrom(0, 2, 4, 0x80000001) },
  ),
  structured: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  setMeta: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  metaQueries: fc.subarray(['base:allocation', 'qemu:allocation-depth'], { minLength: 1 }),
  options: fc.array(optionPlan, { maxLength: 4 }),
  finish: fc.oneof({ weight: 10, arbitrary: fc.constant('go' as const) }, { weight: 2, arbitrary: fc.constant('export-name' as const) }, { weight: 1, arbitrary: fc.constantFrom('abort' as const, 'none' as const) }),
  exportName: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...EXPORT_NAMES) }, { weight: 1, arbitrary: fc.constantFrom('nope', '') }),
  requests: requestsArb,
  mutations: fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 2, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) }),
  chunking: chunkingArb,
  awaitGreeting: fc.boolean(),
  endAfter: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
}).map(({ structured, setMeta, metaQueries, options, exportName, ...rest }) => {
  // The deep path needs STRUCTURED_REPLY then SET_META_CONTEXT for the export GO names; put them first often.
  const lead: OptionPlan[] = []
  const plain = { infos: [], damage: 'valid' as const, garbage: [] }
  if (structured) lead.push({ option: P.NBD_OPT_STRUCTURED_REPLY, name: '', queries: [], ...plain })
  if (structured && setMeta) lead.push({ option: P.NBD_OPT_SET_META_CONTEXT, name: exportName, queries: metaQueries, ...plain })
  return { ...rest, exportName, options: [...lead, ...options] }
})

/** A meta-context payload: export name, query count, queries. */
function metaData(name: string, queries: readonly string[]): Buffer {
  const parts = [Buffer.from(name, 'utf8'), ...queries.map((q) => Buffer.from(q, 'utf8'))]
  const head = Buffer.alloc(4 + parts[0]!.length + 4)
  head.writeUInt32BE(parts[0]!.length, 0)
  head.set(parts[0]!, 4)
  head.writeUInt32BE(queries.length, 4 + parts[0]!.length)
  return Buffer.concat([head, ...parts.slice(1).map((q) => Buffer.concat([u32(q.length), q]))])
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

function optionPayload(o: OptionPlan): Buffer {
  let data: Buffer
  switch (o.option) {
    case P.NBD_OPT_INFO: data = goData(o.name, [...o.infos]); break
    case P.NBD_OPT_SET_META_CONTEXT:
    case P.NBD_OPT_LIST_META_CONTEXT: data = metaData(o.name, o.queries); break
    case P.NBD_OPT_LIST:
    case P.NBD_OPT_STRUCTURED_REPLY:
    case P.NBD_OPT_STARTTLS: data = Buffer.alloc(0); break
    default: data = Buffer.from(o.garbage)
  }
  switch (o.damage) {
    case 'valid': return data
    case 'truncate': return data.subarray(0, Math.max(0, data.length - 1 - (o.garbage[0]! % 8)))
    case 'extend': return Buffer.concat([data, Buffer.from(o.garbage)])
    case 'garbage': return Buffer.from(o.garbage)
    case 'length-field': {
      const copy = Buffer.from(data)
      if (copy.length >= 4) copy.writeUInt32BE((copy.readUInt32BE(0) + 1 + o.garbage[0]!) >>> 0, 0)
      return copy
    }
  }
}

/** The plan's bytes, and where each field starts (for mutation and cut positions). */
export function buildStream(plan: StreamPlan): { bytes: Buffer; boundaries: number[] } {
  const parts: Buffer[] = [u32(plan.clientFlags)]
  for (const o of plan.options) parts.push(optionBytes(o.option, optionPayload(o)))
  if (plan.finish === 'go') parts.push(optionBytes(P.NBD_OPT_GO, goData(plan.exportName)))
  else if (plan.finish === 'export-name') parts.push(optionBytes(P.NBD_OPT_EXPORT_NAME, Buffer.from(plan.exportName, 'utf8')))
  else if (plan.finish === 'abort') parts.push(optionBytes(P.NBD_OPT_ABORT))
  for (const r of plan.requests) {
    // A WRITE carries its declared length of data, up to 64 KiB (a longer one is left short: the server waits).
    const payload = r.type === P.NBD_CMD_WRITE ? pattern(Math.min(r.length, 65536), r.dataSeed) : undefined
    const head = requestBytes(r.type, 0, 0, r.length, r.flags, payload)
    head.writeBigUInt64BE(r.handle, 8)
    head.writeBigUInt64BE(r.offset, 16)
    parts.push(head)
  }
  const boundaries: number[] = []
  let at = 0
  for (const p of parts) {
    boundaries.push(at, at + 4, at + 8, at + 16) // magic, flags/type or option, handle or length, offset
    at += p.length
  }
  return { bytes: Buffer.concat(parts), boundaries }
}

function resolve(p: Position, length: number, boundaries: readonly number[]): number {
  if (length === 0) return 0
  const at = 'fraction' in p ? Math.floor(p.fraction * length) : boundaries[p.boundary % boundaries.length]! + p.delta
  return Math.min(at, length - 1)
}

/** The stream after its mutations, in order. */
export function mutate(bytes: Buffer, boundaries: readonly number[], mutations: readonly Mutation[]): Buffer {
  let out = Buffer.from(bytes)
  for (const m of mutations) {
    const at = resolve(m.at, out.length, boundaries)
    switch (m.kind) {
      case 'flip': if (out.length > 0) out[at] = out[at]! ^ (1 << m.bit); break
      case 'set': if (out.length > 0) out[at] = m.byte; break
      case 'truncate': out = out.subarray(0, at); break
      case 'insert': out = Buffer.concat([out.subarray(0, at), Buffer.from(m.bytes), out.subarray(at)]); break
      case 'delete': out = Buffer.concat([out.subarray(0, at), out.subarray(at + m.count)]); break
      case 'splice': {
        const from = resolve(m.from, out.length, boundaries)
        out = Buffer.concat([out.subarray(0, at), out.subarray(from, from + m.count), out.subarray(at)])
        break
      }
      case 'garbage': out = Buffer.concat([out.subarray(0, at), Buffer.from(m.bytes), out.subarray(at + m.bytes.length)]); break
    }
  }
  return out
}

/** The socket writes the bytes go out in. */
export function chunks(bytes: Buffer, boundaries: readonly number[], chunking: Chunking): Buffer[] {
  let cuts: number[]
  switch (chunking.kind) {
    case 'whole': cuts = []; break
    case 'bytes': cuts = Array.from({ length: Math.min(chunking.first, bytes.length) }, (_, i) => i + 1); break
    case 'cuts': cuts = chunking.at.map((p) => resolve(p, bytes.length, boundaries)); break
    case 'boundaries': cuts = boundaries.map((b) => b + chunking.delta); break
  }
  const sorted = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let from = 0
  for (const c of [...sorted, bytes.length]) {
    if (c > from) out.push(bytes.subarray(from, c))
    from = c
  }
  return out
}
