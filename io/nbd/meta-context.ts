// io/nbd/meta-context.ts: the metadata contexts the server offers (base:allocation and
// qemu:allocation-depth, on every export), their ids, and the NBD_OPT_LIST_META_CONTEXT /
// NBD_OPT_SET_META_CONTEXT payload: which export, which queries, and what they match.

import { MAX_NAME_BYTES } from './protocol.js'

/** A metadata context a client can select; `id` is what BLOCK_STATUS chunks carry. */
export interface MetaContext {
  readonly id: number
  readonly name: 'base:allocation' | 'qemu:allocation-depth'
}

/**
 * Every context, with a fixed id: the same context has the same id on every SET of a
 * connection (and on every connection), so a client never sees an id change meaning.
 */
export const META_CONTEXTS: readonly MetaContext[] = [
  { id: 1, name: 'base:allocation' },
  { id: 2, name: 'qemu:allocation-depth' },
]

/** A parsed LIST/SET payload: the export it names and its query strings. */
export interface MetaContextRequest {
  readonly exportName: string
  readonly queries: readonly string[]
}

/** Parses a LIST/SET payload (export name, query count, queries); a string says what is malformed. */
export function parseMetaContextRequest(data: Buffer): MetaContextRequest | string {
  if (data.length < 8) return 'payload too short for an export name and a query count'
  const nameLength = data.readUInt32BE(0)
  if (nameLength > MAX_NAME_BYTES || 4 + nameLength + 4 > data.length) return 'export name length is wrong'
  const exportName = data.toString('utf8', 4, 4 + nameLength)
  const count = data.readUInt32BE(4 + nameLength)
  const queries: string[] = []
  let at = 4 + nameLength + 4
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return `query ${i} of ${count} is missing`
    const length = data.readUInt32BE(at)
    if (length > MAX_NAME_BYTES || at + 4 + length > data.length) return `query ${i} length ${length} runs past the option`
    const query = data.toString('utf8', at + 4, at + 4 + length)
    if (!query.includes(':')) return `query ${JSON.stringify(query.slice(0, 64))} has no namespace (namespace:leaf)`
    queries.push(query)
    at += 4 + length
  }
  if (at !== data.length) return 'option length does not match its queries'
  return { exportName, queries }
}

/**
 * The contexts LIST answers: all of them for no queries; for each query, the contexts it
 * names exactly or, for an empty leaf (`base:`, `qemu:`), every context of that namespace.
 * Unknown namespaces and leaves match nothing (spec: ignored, not an error).
 */
export function listContexts(queries: readonly string[]): MetaContext[] {
  if (queries.length === 0) return [...META_CONTEXTS]
  return META_CONTEXTS.filter((c) => queries.some((q) => q === c.name || (q.endsWith(':') && c.name.startsWith(q))))
}

/** The contexts SET selects: exact names only (an empty leaf selects nothing), each once, in id order. */
export function selectContexts(queries: readonly string[]): MetaContext[] {
  return META_CONTEXTS.filter((c) => queries.includes(c.name))
}
