// Faults under the NBD server (issue 13 item 2): an origin and a snapshot served with serveNbd
// over FaultDevices, driven by raw clients; at each fault position every request gets a reply
// (a failed one the NBD error EIO, for that request only), both connections and a new client
// keep working once the disk is repaired, and what they read is the model.
import { afterEach, describe, expect, test } from 'vitest'
import * as P from '../../io/nbd/protocol.js'
import { FaultDevice, type FaultOp } from '../../testing/fault-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { pattern } from '../support/bytes.js'
import { RawClient, startServer } from '../nbd/raw-client.js'
import { allPositions, describeFault, Model, samplePositions, type Fault } from './fault-rig.js'

const K = 4096
const ORIGIN = 16 * K
const CI_POSITIONS = 30
const NBD_EIO = 5

let stops: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop()
})

interface Sent { handle: number; type: number; offset: number; length: number; export: 'origin' | 'snap'; expected?: Model }

/** Reads the simple replies to `sent` in any order; a reply missing after 3 s is a hang. */
async function replies(c: RawClient, sent: Sent[]): Promise<Map<number, { error: number; data?: Buffer }>> {
  const out = new Map<number, { error: number; data?: Buffer }>()
  const read = (async () => {
    while (out.size < sent.length) {
      const h = await c.must(16)
      expect(h.readUInt32BE(0)).toBe(P.NBD_SIMPLE_REPLY_MAGIC)
      const error = h.readUInt32BE(4)
      const handle = Number(h.readBigUInt64BE(8))
      const request = sent.find((s) => s.handle === handle)!
      out.set(handle, { error, data: error === 0 && request.type === P.NBD_CMD_READ ? await c.must(request.length) : undefined })
    }
  })()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([read, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no reply to ${sent.length - out.size} request(s) after 3 s (a hang)`)), 3000) })])
  clearTimeout(timer)
  return out
}

async function rig() {
  const devices = new Map<string, FaultDevice>([
    ['origin', new FaultDevice(MemoryDevice.from(pattern(0, ORIGIN, 1)))],
    ['cow', new FaultDevice(new MemoryDevice(24 * K))],
  ])
  const origin = await openOrigin(devices.get('origin')!)
  const snap = await origin.createSnapshot(devices.get('cow')!, { chunkSize: K })
  const server = await startServer({ origin, snap })
  stops.push(async () => { await server.stop(); await origin.close() })
  const a = await RawClient.connect(server.socket)
  const b = await RawClient.connect(server.socket)
  stops.push(async () => { a.destroy(); b.destroy() })
  await a.open('origin')
  await b.open('snap')
  const models = { origin: new Model(pattern(0, ORIGIN, 1)), snap: new Model(pattern(0, ORIGIN, 1)) }
  return { devices, origin, snap, server, a, b, models }
}

type Rig = Awaited<ReturnType<typeof rig>>

/** The workload: pipelined first writes (copies), reads of both exports, snapshot writes, flushes. */
async function workload(r: Rig): Promise<{ sent: Sent[]; got: Map<number, { error: number; data?: Buffer }> }> {
  let handle = 1
  const sent: Sent[] = []
  const got = new Map<number, { error: number; data?: Buffer }>()
  const olds = new Map<number, Uint8Array>()
  const send = (client: RawClient, exp: 'origin' | 'snap', type: number, offset: number, length: number, seed = 0) => {
    const s: Sent = { handle: handle++, type, offset, length, export: exp, expected: type === P.NBD_CMD_READ ? r.models[exp].clone() : undefined }
    sent.push(s)
    const data = type === P.NBD_CMD_WRITE ? pattern(offset, length, seed) : undefined
    if (data !== undefined) olds.set(s.handle, r.models[exp].write(offset, data))
    client.request(type, s.handle, offset, length, 0, data)
  }
  const wave = async (build: () => void) => {
    const from = sent.length
    build()
    const mine = sent.slice(from)
    const [ra, rb] = await Promise.all([replies(r.a, mine.filter((s) => s.export === 'origin')), replies(r.b, mine.filter((s) => s.export === 'snap'))])
    for (const [h, reply] of [...ra, ...rb]) {
      got.set(h, reply)
      const s = sent.find((x) => x.handle === h)!
      if (s.type !== P.NBD_CMD_WRITE) continue
      if (reply.error === 0) r.models[s.export].written(s.offset, s.length)
      else r.models[s.export].uncertain(s.offset, olds.get(h)!)
    }
  }
  await wave(() => {
    for (const c of [1, 2, 5]) send(r.a, 'origin', P.NBD_CMD_WRITE, c * K, K, 10 + c)
    send(r.b, 'snap', P.NBD_CMD_READ, 8 * K, 2 * K)
    send(r.a, 'origin', P.NBD_CMD_READ, 12 * K, K)
  })
  await wave(() => {
    send(r.b, 'snap', P.NBD_CMD_READ, 0, 8 * K) // chunks 1, 2, 5 from the COW
    send(r.b, 'snap', P.NBD_CMD_WRITE, 9 * K + 512, 512, 20) // a copy first
    send(r.b, 'snap', P.NBD_CMD_WRITE, 2 * K, 1024, 21) // to a Completed chunk
    send(r.a, 'origin', P.NBD_CMD_FLUSH, 0, 0)
    send(r.b, 'snap', P.NBD_CMD_FLUSH, 0, 0)
  })
  return { sent, got }
}

describe('faults under the NBD server', () => {
  test('a failed request is EIO for that request only; both connections and a new client go on', async () => {
    const clean = await rig()
    for (const d of clean.devices.values()) d.arm({ nth: Number.MAX_SAFE_INTEGER }) // counts nothing: a harmless plan
    const counts = new Map<string, Record<FaultOp, number>>()
    const counting = [...clean.devices].map(([name, d]) => {
      const c = { read: 0, write: 0, flush: 0 }
      counts.set(name, c)
      return { restore: wrapCounts(d.inner, c) }
    })
    const { got } = await workload(clean)
    expect([...got.values()].every((g) => g.error === 0)).toBe(true)
    for (const c of counting) c.restore()
    for (const stop of stops.splice(0)) await stop()

    const { positions, seed } = samplePositions(allPositions(counts), CI_POSITIONS)
    const broken: string[] = []
    let eio = 0
    for (const fault of positions) {
      try {
        eio += await faultRun(fault)
      } catch (error) {
        broken.push(`${describeFault(fault)}: ${(error as Error).message.split('\n')[0]}`)
      } finally {
        for (const stop of stops.splice(0)) await stop()
      }
    }
    expect(broken, `SNAPCOW_FAULT_SEED=${seed}`).toEqual([])
    expect(eio, `EIO replies in ${positions.length} runs`).toBeGreaterThan(0) // the faults did reach the clients
  })
})

/** Counts requests reaching the FaultDevice's inner device (the clean run). */
function wrapCounts(inner: FaultDevice['inner'], c: Record<FaultOp, number>): () => void {
  const { read, write, flush } = inner
  const target = inner as { read: typeof read; write: typeof write; flush: typeof flush }
  target.read = (o, b) => { c.read++; return read.call(inner, o, b) }
  target.write = (o, b) => { c.write++; return write.call(inner, o, b) }
  target.flush = () => { c.flush++; return flush.call(inner) }
  return () => { target.read = read; target.write = write; target.flush = flush }
}

/** One run with `fault`; returns how many requests were answered with EIO. */
async function faultRun(fault: Fault): Promise<number> {
  const r = await rig()
  const device = r.devices.get(fault.device)!
  device.arm({ op: fault.op, nth: fault.nth, mode: fault.mode, takesEffect: fault.takesEffect })
  const { sent, got } = await workload(r)
  expect(device.faultsInjected, 'the position is reached').toBeGreaterThan(0)
  const invalid = r.snap.status().state === 'invalid'
  if (invalid) expect(fault.device === 'cow' ? fault.op !== 'read' : fault.op === 'read', 'only a failed copy or commit invalidates').toBe(true)
  const opOf = (type: number): FaultOp => (type === P.NBD_CMD_READ ? 'read' : type === P.NBD_CMD_WRITE ? 'write' : 'flush')
  const failed = sent.filter((s) => got.get(s.handle)!.error !== 0)
  for (const s of failed) {
    expect(got.get(s.handle)!.error, `request ${s.handle}`).toBe(NBD_EIO)
    if (s.export === 'snap' && invalid) continue // an Invalid snapshot fails its I/O
    const explained = s.export === 'origin'
      ? fault.device === 'origin' && fault.op === opOf(s.type)
      : fault.op === opOf(s.type) && (fault.device === 'cow' || (fault.op === 'read' && fault.device === 'origin'))
    expect(explained, `${s.export} request ${s.handle} (${opOf(s.type)}) failed`).toBe(true)
  }
  if (fault.mode === 'once') expect(failed.filter((s) => s.export === 'origin' || !invalid).length).toBeLessThanOrEqual(1)
  // Replies that succeeded carried the model's data.
  for (const s of sent) {
    const data = got.get(s.handle)!.data
    if (data !== undefined) expect(s.expected!.mismatch(s.offset, data), `data of request ${s.handle}`).toBeUndefined()
  }
  // The disk is repaired: both connections and a new client read the models.
  for (const d of r.devices.values()) d.disarm()
  const c = await RawClient.connect(r.server.socket)
  stops.push(async () => { c.destroy() })
  await c.open('origin')
  const whole = (client: RawClient, exp: 'origin' | 'snap', handle: number) => {
    client.request(P.NBD_CMD_READ, handle, 0, ORIGIN)
    return replies(client, [{ handle, type: P.NBD_CMD_READ, offset: 0, length: ORIGIN, export: exp }])
  }
  const [ra, rb, rc] = await Promise.all([whole(r.a, 'origin', 100), whole(r.b, 'snap', 101), whole(c, 'origin', 102)])
  for (const reply of [ra.get(100)!, rc.get(102)!]) {
    expect(reply.error).toBe(0)
    expect(r.models.origin.mismatch(0, reply.data!)).toBeUndefined()
  }
  if (invalid) expect(rb.get(101)!.error).toBe(NBD_EIO)
  else expect(r.models.snap.mismatch(0, rb.get(101)!.data!)).toBeUndefined()
  r.a.request(P.NBD_CMD_WRITE, 103, 12 * K, K, 0, pattern(12 * K, K, 30))
  expect((await replies(r.a, [{ handle: 103, type: P.NBD_CMD_WRITE, offset: 12 * K, length: K, export: 'origin' }])).get(103)!.error).toBe(0)
  return failed.length
}
