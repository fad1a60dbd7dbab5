// NBD_CMD_BLOCK_STATUS and the meta-context options over a raw socket: LIST/SET negotiation
// (queries, unknown contexts, ids, structured replies first), then base:allocation and
// qemu:allocation-depth on a snapshot export, checked against the chunks the test copied.
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { openOrigin, type Origin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { checkRequest } from '../../io/nbd/requests.js'
import { goData, pattern, RawClient, startServer } from './raw-client.js'

const CHUNK = 4096
const SIZE = 64 * CHUNK

/** A LIST/SET_META_CONTEXT payload: export name, query count, queries. */
function metaData(name: string, queries: string[]): Buffer {
  const parts = [Buffer.from(name, 'utf8')]
  const head = Buffer.alloc(4)
  head.writeUInt32BE(parts[0]!.length)
  const count = Buffer.alloc(4)
  count.writeUInt32BE(queries.length)
  const qs = queries.map((q) => {
    const b = Buffer.from(q, 'utf8')
    const len = Buffer.alloc(4)
    len.writeUInt32BE(b.length)
    return Buffer.concat([len, b])
  })
  return Buffer.concat([head, parts[0]!, count, ...qs])
}

/** Sends a meta-context option; returns the contexts replied (id, name) and the final reply type. */
async function metaOption(c: RawClient, option: number, name: string, queries: string[]): Promise<{ contexts: Array<{ id: number; name: string }>; type: number }> {
  c.sendOption(option, metaData(name, queries))
  const contexts: Array<{ id: number; name: string }> = []
  for (;;) {
    const r = await c.optionReply()
    expect(r.option).toBe(option)
    if (r.type !== P.NBD_REP_META_CONTEXT) return { contexts, type: r.type }
    contexts.push({ id: r.data.readUInt32BE(0), name: r.data.toString('utf8', 4) })
  }
}

async function go(c: RawClient, name: string): Promise<void> {
  c.sendOption(P.NBD_OPT_GO, goData(name))
  let r = await c.optionReply()
  while (r.type === P.NBD_REP_INFO) r = await c.optionReply()
  expect(r.type).toBe(P.NBD_REP_ACK)
}

async function structured(c: RawClient): Promise<void> {
  await c.greet()
  c.sendOption(P.NBD_OPT_STRUCTURED_REPLY)
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ACK)
}

interface StatusChunk { id: number; extents: Array<{ length: number; flags: number }>; done: boolean }

/** Reads one request's structured chunks up to DONE: block-status chunks, or the error value. */
async function statusReply(c: RawClient, handle: number): Promise<{ chunks: StatusChunk[]; error?: number }> {
  const chunks: StatusChunk[] = []
  for (;;) {
    const r = await c.structuredReply()
    expect(r.handle).toBe(handle)
    const done = (r.flags & P.NBD_REPLY_FLAG_DONE) !== 0
    if (r.type === P.NBD_REPLY_TYPE_ERROR) return { chunks, error: r.payload.readUInt32BE(0) }
    expect(r.type).toBe(P.NBD_REPLY_TYPE_BLOCK_STATUS)
    expect((r.payload.length - 4) % 8).toBe(0)
    const extents = []
    for (let at = 4; at < r.payload.length; at += 8) extents.push({ length: r.payload.readUInt32BE(at), flags: r.payload.readUInt32BE(at + 4) })
    chunks.push({ id: r.payload.readUInt32BE(0), extents, done })
    if (done) return { chunks }
  }
}

/** The depth runs a range must show, from the chunks the test knows it copied (not from extents()). */
function depthModel(copied: ReadonlySet<number>, offset: number, length: number): Array<{ length: number; flags: number }> {
  const out: Array<{ length: number; flags: number }> = []
  for (let at = offset; at < offset + length;) {
    const chunk = Math.floor(at / CHUNK)
    const to = Math.min((chunk + 1) * CHUNK, offset + length)
    const flags = copied.has(chunk) ? 1 : 2
    const prev = out.at(-1)
    if (prev !== undefined && prev.flags === flags) prev.length += to - at
    else out.push({ length: to - at, flags })
    at = to
  }
  return out
}

let origin: Origin
let snap: Snapshot
let copied: Set<number>
let served: Awaited<ReturnType<typeof startServer>>
beforeEach(async () => {
  origin = await openOrigin(MemoryDevice.from(pattern(SIZE, 1)))
  snap = await origin.createSnapshot(new MemoryDevice(2 * SIZE), { chunkSize: CHUNK })
  // Origin writes copy the old chunk to the COW; snapshot writes land there: both are depth 1.
  await origin.write(0, new Uint8Array(2 * CHUNK).fill(1))
  await snap.write(10 * CHUNK + 512, new Uint8Array(512).fill(2))
  await origin.write(11 * CHUNK, new Uint8Array(CHUNK).fill(3))
  await origin.write(SIZE - CHUNK, new Uint8Array(CHUNK).fill(4))
  copied = new Set([0, 1, 10, 11, 63])
  served = await startServer({ origin, snap: { device: snap, readOnly: true }, plain: new MemoryDevice(SIZE) })
})
afterEach(() => served.stop())

describe('negotiation', () => {
  test('LIST and SET need structured replies first; BLOCK_STATUS without them is EINVAL', async () => {
    const c = await RawClient.connect(served.socket)
    await c.greet()
    expect((await metaOption(c, P.NBD_OPT_LIST_META_CONTEXT, 'snap', [])).type).toBe(P.NBD_REP_ERR_INVALID)
    expect(await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'snap', ['base:allocation'])).toEqual({ contexts: [], type: P.NBD_REP_ERR_INVALID })
    await go(c, 'snap')
    c.request(P.NBD_CMD_BLOCK_STATUS, 1, 0, CHUNK)
    expect(await c.simpleReply()).toMatchObject({ error: P.NBD_EINVAL, handle: 1 })
    c.request(P.NBD_CMD_READ, 2, 0, 512) // still in step
    expect(await c.simpleReply(512)).toMatchObject({ error: 0, handle: 2 })
    c.destroy()
  })

  test('LIST: everything for no query, a namespace for `ns:`, nothing for unknown ones; ids are 0', async () => {
    const c = await RawClient.connect(served.socket)
    await structured(c)
    const list = async (name: string, queries: string[]) => metaOption(c, P.NBD_OPT_LIST_META_CONTEXT, name, queries)
    const both = [{ id: 0, name: 'base:allocation' }, { id: 0, name: 'qemu:allocation-depth' }]
    expect(await list('snap', [])).toEqual({ contexts: both, type: P.NBD_REP_ACK })
    expect(await list('origin', [])).toEqual({ contexts: both, type: P.NBD_REP_ACK })
    expect(await list('snap', ['base:'])).toEqual({ contexts: [both[0]], type: P.NBD_REP_ACK })
    expect(await list('snap', ['qemu:'])).toEqual({ contexts: [both[1]], type: P.NBD_REP_ACK })
    expect(await list('snap', ['qemu:allocation-depth', 'base:allocation'])).toEqual({ contexts: both, type: P.NBD_REP_ACK })
    expect(await list('snap', ['x-foo:bar', 'base:nope', 'qemu:dirty-bitmap:'])).toEqual({ contexts: [], type: P.NBD_REP_ACK })
    expect((await list('nope', [])).type).toBe(P.NBD_REP_ERR_UNKNOWN)
    expect((await list('snap', ['no-colon'])).type).toBe(P.NBD_REP_ERR_INVALID)
    // A query length running past the option, and a missing query count.
    const bad = metaData('snap', ['base:'])
    bad.writeUInt32BE(999, bad.length - 9)
    c.sendOption(P.NBD_OPT_LIST_META_CONTEXT, bad)
    expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
    c.sendOption(P.NBD_OPT_LIST_META_CONTEXT, goData('snap').subarray(0, 8))
    expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
    await go(c, 'snap') // the handshake carried on
    c.destroy()
  })

  test('SET selects known names (each id stable on the connection), ignores unknown ones and `ns:`', async () => {
    const c = await RawClient.connect(served.socket)
    await structured(c)
    const set = async (queries: string[]) => metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'snap', queries)
    const first = await set(['qemu:allocation-depth', 'x-foo:bar', 'base:', 'qemu:', 'base:allocation', 'base:allocation'])
    expect(first.type).toBe(P.NBD_REP_ACK)
    expect(first.contexts.map((x) => x.name).sort()).toEqual(['base:allocation', 'qemu:allocation-depth'])
    expect(new Set(first.contexts.map((x) => x.id)).size).toBe(2)
    const depthId = first.contexts.find((x) => x.name === 'qemu:allocation-depth')!.id
    expect(await set(['qemu:allocation-depth'])).toEqual({ contexts: [{ id: depthId, name: 'qemu:allocation-depth' }], type: P.NBD_REP_ACK })
    expect(await set(['x-foo:bar'])).toEqual({ contexts: [], type: P.NBD_REP_ACK })
    const last = await set(['base:allocation', 'qemu:allocation-depth'])
    expect(last.contexts.find((x) => x.name === 'qemu:allocation-depth')?.id).toBe(depthId)
    await go(c, 'snap')
    c.request(P.NBD_CMD_BLOCK_STATUS, 5, 0, SIZE)
    const { chunks } = await statusReply(c, 5)
    expect(chunks.map((x) => x.id).sort()).toEqual(last.contexts.map((x) => x.id).sort())
    expect(chunks.map((x) => x.done)).toEqual([false, true])
    c.destroy()
  })

  test.each([
    ['a SET naming another export', async (c: RawClient) => { await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'origin', ['base:allocation']) }],
    ['a later SET that fails', async (c: RawClient) => {
      await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'snap', ['base:allocation'])
      expect((await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'nope', ['base:allocation'])).type).toBe(P.NBD_REP_ERR_UNKNOWN)
    }],
    ['a later SET with no queries', async (c: RawClient) => {
      await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'snap', ['base:allocation'])
      expect(await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'snap', [])).toEqual({ contexts: [], type: P.NBD_REP_ACK })
    }],
  ])('no context is selected after %s: BLOCK_STATUS is EINVAL', async (_label, negotiate) => {
    const c = await RawClient.connect(served.socket)
    await structured(c)
    await negotiate(c)
    await go(c, 'snap')
    c.request(P.NBD_CMD_BLOCK_STATUS, 3, 0, CHUNK)
    expect(await statusReply(c, 3)).toEqual({ chunks: [], error: P.NBD_EINVAL })
    c.destroy()
  })
})

describe('BLOCK_STATUS', () => {
  /** A connection to `name` with both contexts selected; returns the ids by name. */
  async function open(name: string): Promise<{ c: RawClient; base: number; depth: number }> {
    const c = await RawClient.connect(served.socket)
    await structured(c)
    const { contexts } = await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, name, ['base:allocation', 'qemu:allocation-depth'])
    await go(c, name)
    return { c, base: contexts.find((x) => x.name === 'base:allocation')!.id, depth: contexts.find((x) => x.name === 'qemu:allocation-depth')!.id }
  }
  async function status(c: RawClient, offset: number, length: number, flags = 0) {
    c.request(P.NBD_CMD_BLOCK_STATUS, 9, offset, length, flags)
    return statusReply(c, 9)
  }

  test('a snapshot: depth 1 where chunks were copied, 2 where it reads the origin; base:allocation all data', async () => {
    const { c, base, depth } = await open('snap')
    const { chunks } = await status(c, 0, SIZE)
    const byId = new Map(chunks.map((x) => [x.id, x.extents]))
    expect(byId.get(base)).toEqual([{ length: SIZE, flags: 0 }])
    expect(byId.get(depth)).toEqual(depthModel(copied, 0, SIZE))
    expect(byId.get(depth)).toEqual(snap.extents().map((e) => ({ length: e.length, flags: e.inCow ? 1 : 2 })))
    // A range starting and ending inside runs: shortened at both ends, never past the request.
    const part = await status(c, CHUNK + 1024, 10 * CHUNK)
    expect(part.chunks.find((x) => x.id === depth)!.extents).toEqual(depthModel(copied, CHUNK + 1024, 10 * CHUNK))
    // A copy made after the connection opened shows at once.
    await origin.write(30 * CHUNK, new Uint8Array(512).fill(9))
    const later = await status(c, 29 * CHUNK, 3 * CHUNK)
    expect(later.chunks.find((x) => x.id === depth)!.extents).toEqual([{ length: CHUNK, flags: 2 }, { length: CHUNK, flags: 1 }, { length: CHUNK, flags: 2 }])
    c.destroy()
  })

  test('REQ_ONE: one extent per context, no longer than the request', async () => {
    const { c, base, depth } = await open('snap')
    const one = async (offset: number, length: number) => {
      const { chunks } = await status(c, offset, length, P.NBD_CMD_FLAG_REQ_ONE)
      expect(chunks).toHaveLength(2)
      return new Map(chunks.map((x) => [x.id, x.extents]))
    }
    let got = await one(0, SIZE)
    expect(got.get(depth)).toEqual([{ length: 2 * CHUNK, flags: 1 }])
    expect(got.get(base)).toEqual([{ length: SIZE, flags: 0 }])
    got = await one(2 * CHUNK, CHUNK)
    expect(got.get(depth)).toEqual([{ length: CHUNK, flags: 2 }])
    got = await one(10 * CHUNK + 512, 512)
    expect(got.get(depth)).toEqual([{ length: 512, flags: 1 }])
    expect(got.get(base)).toEqual([{ length: 512, flags: 0 }])
    c.destroy()
  })

  test('exports that are not snapshots are one layer: depth 1 and allocated throughout', async () => {
    for (const name of ['origin', 'plain']) {
      const { c, base, depth } = await open(name)
      const { chunks } = await status(c, 4 * CHUNK, 8 * CHUNK)
      expect(new Map(chunks.map((x) => [x.id, x.extents]))).toEqual(new Map([[base, [{ length: 8 * CHUNK, flags: 0 }]], [depth, [{ length: 8 * CHUNK, flags: 1 }]]]))
      c.destroy()
    }
  })

  test('range checks like other commands: length 0, past the end, unaligned, an unknown flag are EINVAL', async () => {
    const { c } = await open('snap')
    const cases: Array<[number, number, number]> = [
      [0, 0, 0], [SIZE - CHUNK, 2 * CHUNK, 0], [SIZE, 512, 0], [2 ** 60, 512, 0], [100, 512, 0], [0, 100, 0], [0, 512, P.NBD_CMD_FLAG_FUA],
    ]
    for (const [offset, length, flags] of cases) expect(await status(c, offset, length, flags), `${offset}+${length} flags ${flags}`).toEqual({ chunks: [], error: P.NBD_EINVAL })
    expect((await status(c, SIZE - 512, 512)).chunks).toHaveLength(2) // the last sector is fine
    c.destroy()
  })

  test('a snapshot that became invalid answers EIO, and the connection carries on', async () => {
    const small = await origin.createSnapshot(new MemoryDevice(3 * CHUNK), { chunkSize: CHUNK }) // room for one chunk
    await origin.write(20 * CHUNK, new Uint8Array(CHUNK))
    await origin.write(21 * CHUNK, new Uint8Array(CHUNK)) // no room: invalid
    const local = await startServer({ small })
    try {
      const c = await RawClient.connect(local.socket)
      await structured(c)
      await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 'small', ['qemu:allocation-depth'])
      await go(c, 'small')
      expect((await status(c, 0, CHUNK)).error).toBe(P.NBD_EIO)
      c.request(P.NBD_CMD_FLUSH, 4, 0, 0)
      expect((await c.structuredReply()).type).toBe(P.NBD_REPLY_TYPE_NONE)
      c.destroy()
    } finally {
      await local.stop()
    }
  })

  test('property: depths match the chunks copied, for any copies and any range', async () => {
    await fc.assert(fc.asyncProperty(
      fc.uniqueArray(fc.record({ chunk: fc.integer({ min: 0, max: 63 }), viaOrigin: fc.boolean() }), { selector: (w) => w.chunk, maxLength: 20 }),
      fc.integer({ min: 0, max: SIZE / 512 - 1 }), fc.integer({ min: 1, max: SIZE / 512 }), fc.boolean(),
      async (writes, startSector, sectors, reqOne) => {
        const o = await openOrigin(new MemoryDevice(SIZE))
        const s = await o.createSnapshot(new MemoryDevice(2 * SIZE), { chunkSize: CHUNK })
        for (const w of writes) await (w.viaOrigin ? o : s).write(w.chunk * CHUNK + 512, new Uint8Array(512).fill(1))
        const offset = startSector * 512
        const length = Math.min(sectors * 512, SIZE - offset)
        const local = await startServer({ s: { device: s, readOnly: true } })
        try {
          const c = await RawClient.connect(local.socket)
          await structured(c)
          await metaOption(c, P.NBD_OPT_SET_META_CONTEXT, 's', ['qemu:allocation-depth'])
          await go(c, 's')
          const { chunks } = await status(c, offset, length, reqOne ? P.NBD_CMD_FLAG_REQ_ONE : 0)
          const expected = depthModel(new Set(writes.map((w) => w.chunk)), offset, length)
          expect(chunks).toHaveLength(1)
          expect(chunks[0]!.extents).toEqual(reqOne ? expected.slice(0, 1) : expected)
          c.destroy()
        } finally {
          await local.stop()
        }
      },
    ), { numRuns: 40 })
  }, 30_000)
})

test('checkRequest: BLOCK_STATUS takes REQ_ONE and lengths past the 32 MiB payload limit once a context is set', () => {
  const limits = { size: 2 ** 40, readOnly: true, blockStatus: true }
  const check = (offset: number, length: number, flags = 0, l: Parameters<typeof checkRequest>[1] = limits) =>
    checkRequest({ type: P.NBD_CMD_BLOCK_STATUS, flags, handle: 1n, offset, length }, l)?.error
  expect(check(0, 2 ** 32 - 512, P.NBD_CMD_FLAG_REQ_ONE)).toBeUndefined()
  expect(check(0, 512, P.NBD_CMD_FLAG_DF)).toBe(P.NBD_EINVAL)
  expect(check(0, 512, 0, { ...limits, blockStatus: false })).toBe(P.NBD_EINVAL)
  expect(check(2 ** 40 - 512, 1024)).toBe(P.NBD_EINVAL)
})
