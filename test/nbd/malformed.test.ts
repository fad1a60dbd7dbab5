// Malformed input ends only the offending connection (or is refused with an error when the stream
// can still be followed), writes nothing, and leaves the server and every other client working;
// a client vanishing mid-request leaves no unhandled rejection.
import { afterAll, beforeAll, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'
import { goData, optionBytes, pattern, RawClient, requestBytes, startServer } from './raw-client.js'

const SIZE = 1 << 20
const image = pattern(SIZE, 5)
const dev = MemoryDevice.from(image)
let served: Awaited<ReturnType<typeof startServer>>
let bystander: RawClient
let round = 0
const rejections: unknown[] = []
const onRejection = (reason: unknown) => rejections.push(reason)

beforeAll(async () => {
  process.on('unhandledRejection', onRejection)
  served = await startServer({ disk: dev, ro: { device: dev, readOnly: true } })
  bystander = await RawClient.connect(served.socket)
  await bystander.open('disk', true)
})
afterAll(async () => {
  bystander.destroy()
  await served.stop()
  process.off('unhandledRejection', onRejection)
})

/** The bystander (connected all along) and a newcomer still do I/O, and only the bystander's block changed. */
async function othersStillWork(): Promise<void> {
  round++
  const block = Buffer.alloc(512, round)
  bystander.request(P.NBD_CMD_WRITE, round, 0, 512, 0, block)
  expect(await bystander.structuredReply()).toMatchObject({ type: P.NBD_REPLY_TYPE_NONE, handle: round })
  const fresh = await RawClient.connect(served.socket)
  await fresh.open('disk')
  fresh.request(P.NBD_CMD_READ, 1, 0, 4096)
  const back = await fresh.simpleReply(4096)
  expect(back?.data?.subarray(0, 512)).toEqual(block)
  fresh.destroy()
  const expected = Buffer.from(image)
  expected.fill(round, 0, 512)
  expect(Buffer.from(dev.snapshotBytes()).equals(expected), 'the image holds only the good writes').toBe(true)
  expect(rejections).toEqual([])
}

/** Sends `bytes` (after `setup`), expects the server to hang up without replying to them. */
async function expectHangUp(setup: (c: RawClient) => Promise<void>, bytes: Buffer): Promise<void> {
  const c = await RawClient.connect(served.socket)
  await setup(c)
  c.write(bytes)
  await c.closed
  expect(await c.read(1), 'no reply to the malformed input').toBeUndefined()
  await othersStillWork()
}

const greetOnly = async (c: RawClient) => { await c.must(18) }
const greeted = async (c: RawClient) => { await c.greet() }
const opened = async (c: RawClient) => { await c.open('disk') }

test('garbage instead of client flags (an HTTP request) is dropped', async () => {
  await expectHangUp(greetOnly, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
})

test('garbage sent at once, before the greeting is read, gets the greeting and nothing more', async () => {
  const c = await RawClient.connect(served.socket)
  c.write(Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello, not NBD'))
  await c.closed
  expect((await c.read(18))?.readBigUInt64BE(0)).toBe(P.NBD_MAGIC)
  expect(await c.read(1)).toBeUndefined()
  await othersStillWork()
})

test('an unknown option is answered NBD_REP_ERR_UNSUP and the handshake goes on', async () => {
  const c = await RawClient.connect(served.socket)
  await c.greet()
  c.sendOption(0x7fff_0001, Buffer.from('whatever'))
  expect(await c.optionReply()).toMatchObject({ option: 0x7fff_0001, type: P.NBD_REP_ERR_UNSUP })
  c.sendOption(P.NBD_OPT_GO, goData('disk'))
  for (let r = await c.optionReply(); r.type !== P.NBD_REP_ACK; r = await c.optionReply()) expect(r.type).toBe(P.NBD_REP_INFO)
  c.request(P.NBD_CMD_READ, 1, 4096, 512)
  expect((await c.simpleReply(512))?.data).toEqual(Buffer.from(image.subarray(4096, 4608)))
  c.destroy()
  await othersStillWork()
})

test('an unknown command, a READ over the maximum, ranges outside the export and writes to a read-only export are refused; the connection goes on', async () => {
  const refused = async (c: RawClient, expected: number, type: number, offset: number, length: number, payload?: Buffer) => {
    c.request(type, 7, offset, length, 0, payload)
    expect(await c.simpleReply(), `command ${type} at ${offset}+${length}`).toMatchObject({ error: expected, handle: 7 })
  }
  const block = Buffer.alloc(512, 0xee)
  const c = await RawClient.connect(served.socket)
  await c.open('disk')
  await refused(c, P.NBD_EINVAL, 99, 0, 512)
  await refused(c, P.NBD_EINVAL, P.NBD_CMD_READ, 0, P.MAX_BLOCK_BYTES + 512)
  await refused(c, P.NBD_EINVAL, P.NBD_CMD_READ, SIZE - 512, 1024)
  await refused(c, P.NBD_EINVAL, P.NBD_CMD_READ, 2 ** 63, 512)
  await refused(c, P.NBD_ENOSPC, P.NBD_CMD_WRITE, SIZE, 512, block)
  await refused(c, P.NBD_ENOSPC, P.NBD_CMD_WRITE, SIZE - 512, 1024, Buffer.concat([block, block]))
  await refused(c, P.NBD_ENOSPC, P.NBD_CMD_WRITE, 2 ** 64 - 2048, 4096, Buffer.alloc(4096, 0xee)) // offset + length wraps past 2^64 (2^64 - 2048 is exact in a double)
  await refused(c, P.NBD_ENOSPC, P.NBD_CMD_WRITE_ZEROES, SIZE - 512, 1024)
  c.request(P.NBD_CMD_READ, 8, SIZE - 512, 512)
  expect((await c.simpleReply(512))?.data).toEqual(Buffer.from(image.subarray(SIZE - 512)))
  c.destroy()
  const ro = await RawClient.connect(served.socket)
  await ro.open('ro')
  await refused(ro, P.NBD_EPERM, P.NBD_CMD_WRITE, 0, 512, block)
  await refused(ro, P.NBD_EPERM, P.NBD_CMD_WRITE_ZEROES, 0, 512)
  ro.destroy()
  await othersStillWork()
})

test('a client without fixed newstyle, or with unknown flags, is dropped', async () => {
  await expectHangUp(greetOnly, Buffer.from([0, 0, 0, 0]))
  await expectHangUp(greetOnly, Buffer.from([0, 0, 0, 0x81]))
})

test('an option without the IHAVEOPT magic, or too long to hold, is dropped', async () => {
  const bad = optionBytes(P.NBD_OPT_GO, goData('disk'))
  bad.writeUInt32BE(0xdeadbeef, 0)
  await expectHangUp(greeted, bad)
  const long = optionBytes(P.NBD_OPT_GO)
  long.writeUInt32BE(P.MAX_OPTION_BYTES + 1, 12)
  await expectHangUp(greeted, long)
})

test('a request with a bad magic is dropped, and so are the good requests behind it', async () => {
  await expectHangUp(opened, Buffer.concat([
    requestBytes(P.NBD_CMD_WRITE, 1, 8192, 512, 0, Buffer.alloc(512, 0xee), 0x25609514),
    requestBytes(P.NBD_CMD_WRITE, 2, 8192, 512, 0, Buffer.alloc(512, 0xee)),
  ]))
})

test('a WRITE longer than the maximum block size is dropped before its payload is read', async () => {
  await expectHangUp(opened, requestBytes(P.NBD_CMD_WRITE, 1, 0, P.MAX_BLOCK_BYTES + 4096))
})

test('disconnects mid-handshake and mid-request leave nothing behind', async () => {
  const cuts: Array<[(c: RawClient) => Promise<void>, Buffer]> = [
    [greetOnly, Buffer.from([0, 0])],
    [greeted, optionBytes(P.NBD_OPT_GO, goData('disk')).subarray(0, 20)],
    [opened, requestBytes(P.NBD_CMD_READ, 1, 0, 512).subarray(0, 27)],
    [opened, requestBytes(P.NBD_CMD_WRITE, 1, 8192, 4096)], // the header, no payload
    [opened, requestBytes(P.NBD_CMD_WRITE, 1, 8192, 4096, 0, Buffer.alloc(4096, 0xee)).subarray(0, 28 + 2048)],
    [opened, requestBytes(P.NBD_CMD_WRITE, 1, 8192, 4096, 0, Buffer.alloc(4096, 0xee)).subarray(0, 28 + 4095)],
  ]
  for (const [setup, bytes] of cuts) {
    const c = await RawClient.connect(served.socket)
    await setup(c)
    c.socket.end(bytes)
    await c.closed
    await othersStillWork()
  }
})

test('garbage after a good request does not stop that request from completing on the device', async () => {
  const c = await RawClient.connect(served.socket)
  await c.open('disk')
  c.request(P.NBD_CMD_READ, 1, 0, 512)
  c.write(Buffer.alloc(28, 0xff))
  await c.closed
  await othersStillWork()
})

test('a client that vanishes with requests in flight: they finish, nothing is sent to it, nothing rejects unhandled', async () => {
  const slow = new ControlledDevice(new MemoryDevice(SIZE))
  const other = await startServer({ slow })
  try {
    const c = await RawClient.connect(other.socket)
    await c.open('slow', true)
    c.request(P.NBD_CMD_WRITE, 1, 0, 4096, P.NBD_CMD_FLAG_FUA, Buffer.alloc(4096, 1))
    c.request(P.NBD_CMD_READ, 2, 8192, 4096)
    c.request(P.NBD_CMD_FLUSH, 3, 0, 0)
    while (slow.parked.length < 3) await settle()
    c.destroy()
    await c.closed
    await settle()
    slow.releaseAll() // the write's FUA flush parks next
    while (slow.parked.length < 1) await settle()
    slow.releaseAll()
    await settle()
    expect(slow.submitted).toEqual(['write@0+4096', 'read@8192+4096', 'flush', 'flush'])
    // The server is still fine for a new client.
    const again = await RawClient.connect(other.socket)
    await again.open('slow')
    slow.passThrough = () => true
    again.request(P.NBD_CMD_READ, 9, 0, 512)
    expect((await again.simpleReply(512))?.data).toEqual(Buffer.alloc(512, 1))
    again.destroy()
  } finally {
    await other.stop()
  }
  await othersStillWork()
})

test('server.close() waits for requests in flight, then hangs up on every client', async () => {
  const slow = new ControlledDevice(new MemoryDevice(SIZE))
  const other = await startServer({ slow })
  const c = await RawClient.connect(other.socket)
  await c.open('slow')
  c.request(P.NBD_CMD_WRITE, 1, 0, 512, 0, Buffer.alloc(512, 4))
  while (slow.parked.length < 1) await settle()
  let closed = false
  const closing = other.stop().then(() => { closed = true })
  await settle()
  expect(closed).toBe(false)
  slow.releaseAll()
  await closing
  expect(await c.simpleReply()).toMatchObject({ error: 0, handle: 1 })
  await c.closed
  expect(Buffer.from(slow.inner instanceof MemoryDevice ? slow.inner.snapshotBytes().subarray(0, 512) : [])).toEqual(Buffer.alloc(512, 4))
})

test('a client that vanishes with many writes in flight: those taken complete whole, the rest never start; another client carries on', async () => {
  const inner = MemoryDevice.from(image)
  const slow = new ControlledDevice(inner)
  const other = await startServer({ slow })
  const N = 100
  const fill = (i: number) => Buffer.alloc(4096, 0x80 + i)
  try {
    const c = await RawClient.connect(other.socket)
    await c.open('slow')
    c.write(Buffer.concat(Array.from({ length: N }, (_, i) => requestBytes(P.NBD_CMD_WRITE, i, i * 4096, 4096, 0, fill(i)))))
    while (slow.parked.length < 64) await settle() // the server takes 64, then stops reading
    c.destroy()
    await c.closed
    slow.passThrough = () => true
    slow.releaseAll()
    const next = await RawClient.connect(other.socket)
    await next.open('slow')
    next.request(P.NBD_CMD_WRITE, 1, 200 * 4096, 4096, P.NBD_CMD_FLAG_FUA, Buffer.alloc(4096, 0x11))
    expect(await next.simpleReply()).toMatchObject({ error: 0, handle: 1 })
    next.request(P.NBD_CMD_READ, 2, 0, 4096)
    expect((await next.simpleReply(4096))?.data).toEqual(fill(0))
    next.destroy()
  } finally {
    await other.stop() // waits for every request in flight
  }
  const now = Buffer.from(inner.snapshotBytes())
  const before = Buffer.from(image)
  const landed = Array.from({ length: N }, (_, i) => {
    const block = now.subarray(i * 4096, (i + 1) * 4096)
    expect(block.equals(fill(i)) || block.equals(before.subarray(i * 4096, (i + 1) * 4096)), `block ${i} is whole, old or new`).toBe(true)
    return block.equals(fill(i))
  })
  expect(landed.slice(0, 64).every(Boolean), 'the 64 writes taken in flight completed').toBe(true)
  expect(landed.filter(Boolean).length).toBe(slow.submitted.filter((s) => s.startsWith('write@') && s !== `write@${200 * 4096}+4096`).length)
  expect(now.subarray(N * 4096, 200 * 4096).equals(before.subarray(N * 4096, 200 * 4096))).toBe(true)
  expect(now.subarray(200 * 4096, 201 * 4096)).toEqual(Buffer.alloc(4096, 0x11))
  expect(now.subarray(201 * 4096).equals(before.subarray(201 * 4096))).toBe(true)
  await othersStillWork()
})
