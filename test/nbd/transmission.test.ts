// The transmission phase over a raw socket: READ, WRITE (+FUA), WRITE_ZEROES, FLUSH, CACHE,
// DISC; many requests in flight answered as each completes; device errors become NBD_EIO.
import { afterEach, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'
import { failingDevice } from '../support/failing-device.js'
import { pattern, RawClient, startServer } from './raw-client.js'

let stops: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop()
})
async function serve(exports: Parameters<typeof startServer>[0]) {
  const s = await startServer(exports)
  stops.push(() => s.stop())
  return s
}

test('WRITE then READ round-trips; FUA flushes; WRITE_ZEROES zeroes through the device; CACHE and FLUSH succeed', async () => {
  const dev = new MemoryDevice(4 << 20)
  let flushes = 0
  const counted = { get size() { return dev.size }, read: dev.read.bind(dev), write: dev.write.bind(dev), close: dev.close.bind(dev), flush: () => { flushes++; return dev.flush() } }
  const { socket } = await serve({ disk: counted })
  const c = await RawClient.connect(socket)
  expect((await c.open('disk')).size).toBe(4 << 20)
  const data = pattern(3 * 1024 * 1024, 1)
  c.request(P.NBD_CMD_WRITE, 1, 512, data.length, 0, data)
  expect(await c.simpleReply()).toMatchObject({ error: 0, handle: 1 })
  expect(flushes).toBe(0)
  c.request(P.NBD_CMD_WRITE, 2, 0, 512, P.NBD_CMD_FLAG_FUA, Buffer.alloc(512, 9))
  expect(await c.simpleReply()).toMatchObject({ error: 0, handle: 2 })
  expect(flushes).toBe(1)
  c.request(P.NBD_CMD_WRITE_ZEROES, 3, 1024 * 1024, 1536 * 1024, P.NBD_CMD_FLAG_NO_HOLE)
  expect(await c.simpleReply()).toMatchObject({ error: 0, handle: 3 })
  c.request(P.NBD_CMD_CACHE, 4, 0, 4 << 20)
  c.request(P.NBD_CMD_FLUSH, 5, 0, 0)
  expect([await c.simpleReply(), await c.simpleReply()]).toMatchObject([{ error: 0, handle: 4 }, { error: 0, handle: 5 }])
  expect(flushes).toBe(2)
  const expected = new Uint8Array(4 << 20)
  expected.set(data, 512)
  expected.fill(9, 0, 512)
  expected.fill(0, 1024 * 1024, 2560 * 1024)
  expect(Buffer.from(dev.snapshotBytes()).equals(Buffer.from(expected))).toBe(true)
  c.request(P.NBD_CMD_READ, 6, 0, 4 << 20)
  const back = await c.simpleReply(4 << 20)
  expect(back?.handle).toBe(6)
  expect(back?.data?.equals(Buffer.from(expected))).toBe(true)
  c.request(P.NBD_CMD_DISC, 7, 0, 0)
  await c.closed
})

test('requests are all in flight at once and each is answered when it completes, out of order', async () => {
  const dev = new ControlledDevice(new MemoryDevice(1 << 20))
  const { socket } = await serve({ disk: dev })
  const c = await RawClient.connect(socket)
  await c.open('disk')
  for (let i = 0; i < 8; i++) c.request(P.NBD_CMD_WRITE, 100 + i, i * 4096, 4096, 0, Buffer.alloc(4096, i + 1))
  while (dev.parked.length < 8) await settle()
  // Complete them last-first: replies follow completion order, not submission order.
  for (let i = 7; i >= 0; i--) dev.releaseOne('write', i * 4096)
  const handles: number[] = []
  for (let i = 0; i < 8; i++) handles.push((await c.simpleReply())!.handle)
  expect(handles).toEqual([107, 106, 105, 104, 103, 102, 101, 100])
  c.destroy()
})

test('past 64 requests in flight the connection stops reading, and reads on as they complete', async () => {
  const dev = new ControlledDevice(new MemoryDevice(1 << 20))
  const { socket } = await serve({ disk: dev })
  const c = await RawClient.connect(socket)
  await c.open('disk')
  for (let i = 0; i < 200; i++) c.request(P.NBD_CMD_WRITE, i, (i % 256) * 4096, 4096, 0, Buffer.alloc(4096, i))
  for (let i = 0; i < 20; i++) await settle()
  expect(dev.parked.length).toBe(64)
  const handles = new Set<number>()
  const reading = (async () => { while (handles.size < 200) handles.add((await c.simpleReply())!.handle) })()
  let most = 0
  for (let round = 0; handles.size < 200 && round < 1000; round++) {
    most = Math.max(most, dev.parked.length)
    dev.releaseAll()
    await settle()
  }
  await reading
  expect(most).toBe(64)
  expect([...handles].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i))
  c.destroy()
})

test('a failing device answers NBD_EIO (simple and structured) and the connection goes on', async () => {
  const dev = new MemoryDevice(1 << 20)
  const failing = failingDevice(dev, (op, offset) => (offset === 8192 || op === 'flush' ? { error: new Error('disk on fire') } : undefined))
  const { socket } = await serve({ disk: failing })
  const c = await RawClient.connect(socket)
  await c.open('disk')
  c.request(P.NBD_CMD_READ, 1, 8192, 512)
  expect(await c.simpleReply(512)).toMatchObject({ error: P.NBD_EIO, handle: 1 })
  c.request(P.NBD_CMD_WRITE, 2, 0, 512, P.NBD_CMD_FLAG_FUA, Buffer.alloc(512, 1))
  expect(await c.simpleReply()).toMatchObject({ error: P.NBD_EIO, handle: 2 }) // the write was done, the flush failed
  c.request(P.NBD_CMD_READ, 3, 0, 512)
  expect((await c.simpleReply(512))?.data).toEqual(Buffer.alloc(512, 1))
  const s = await RawClient.connect(socket)
  await s.open('disk', true)
  s.request(P.NBD_CMD_WRITE, 4, 8192, 512, 0, Buffer.alloc(512, 2))
  const err = await s.structuredReply()
  expect(err).toMatchObject({ type: P.NBD_REPLY_TYPE_ERROR, handle: 4 })
  expect(err.payload.readUInt32BE(0)).toBe(P.NBD_EIO)
  c.destroy()
  s.destroy()
})

test('refused requests: EPERM on a read-only export, ENOSPC past the end, EINVAL unaligned or unknown; nothing is written', async () => {
  const dev = MemoryDevice.from(pattern(1 << 20, 3))
  const { socket } = await serve({ disk: dev, ro: { device: dev, readOnly: true } })
  const ro = await RawClient.connect(socket)
  expect((await ro.open('ro')).flags & P.NBD_FLAG_READ_ONLY).toBeTruthy()
  ro.request(P.NBD_CMD_WRITE, 1, 0, 512, 0, Buffer.alloc(512))
  ro.request(P.NBD_CMD_WRITE_ZEROES, 2, 0, 512)
  ro.request(P.NBD_CMD_READ, 3, 0, 512)
  expect([await ro.simpleReply(), await ro.simpleReply(), await ro.simpleReply(512)]).toMatchObject([
    { error: P.NBD_EPERM, handle: 1 }, { error: P.NBD_EPERM, handle: 2 }, { error: 0, handle: 3 },
  ])
  const c = await RawClient.connect(socket)
  await c.open('disk')
  const cases: Array<[number, number, number, number, Uint8Array | undefined, number]> = [
    [P.NBD_CMD_WRITE, 1 << 20, 512, 0, Buffer.alloc(512), P.NBD_ENOSPC],
    [P.NBD_CMD_WRITE_ZEROES, (1 << 20) - 512, 1024, 0, undefined, P.NBD_ENOSPC],
    [P.NBD_CMD_READ, 1 << 20, 512, 0, undefined, P.NBD_EINVAL],
    [P.NBD_CMD_WRITE, 100, 512, 0, Buffer.alloc(512), P.NBD_EINVAL],
    [P.NBD_CMD_WRITE, 0, 100, 0, Buffer.alloc(100), P.NBD_EINVAL],
    [P.NBD_CMD_READ, 0, 513, 0, undefined, P.NBD_EINVAL],
    [P.NBD_CMD_TRIM, 0, 4096, 0, undefined, P.NBD_EINVAL],
    [P.NBD_CMD_BLOCK_STATUS, 0, 4096, 0, undefined, P.NBD_EINVAL],
    [77, 0, 512, 0, undefined, P.NBD_EINVAL],
    [P.NBD_CMD_WRITE, 0, 512, 0x80, Buffer.alloc(512), P.NBD_EINVAL],
  ]
  cases.forEach(([type, offset, length, flags, payload], i) => c.request(type, 10 + i, offset, length, flags, payload))
  for (const [i, [, , , , , error]] of cases.entries()) expect(await c.simpleReply(), `case ${i}`).toMatchObject({ error, handle: 10 + i })
  // The stream stayed in step: a good request after them all works.
  c.request(P.NBD_CMD_READ, 99, 0, 512)
  expect((await c.simpleReply(512))?.data).toEqual(Buffer.from(pattern(1 << 20, 3).subarray(0, 512)))
  expect(Buffer.from(dev.snapshotBytes()).equals(Buffer.from(pattern(1 << 20, 3)))).toBe(true)
  ro.destroy()
  c.destroy()
})
