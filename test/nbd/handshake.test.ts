// The fixed newstyle handshake over a raw socket: greeting, LIST, INFO, GO, EXPORT_NAME,
// STRUCTURED_REPLY, ABORT, and NBD_REP_ERR_* for what the server does not do.
import { afterEach, beforeEach, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { goData, RawClient, startServer } from './raw-client.js'

let served: Awaited<ReturnType<typeof startServer>>
beforeEach(async () => {
  const dev = new MemoryDevice(1 << 20)
  served = await startServer({ disk: dev, ro: { device: dev, readOnly: true } })
})
afterEach(() => served.stop())

test('greeting advertises fixed newstyle and no-zeroes; LIST names every export', async () => {
  const c = await RawClient.connect(served.socket)
  expect(await c.greet()).toBe(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES)
  c.sendOption(P.NBD_OPT_LIST)
  const names: string[] = []
  for (let r = await c.optionReply(); r.type !== P.NBD_REP_ACK; r = await c.optionReply()) {
    expect(r.type).toBe(P.NBD_REP_SERVER)
    names.push(r.data.toString('utf8', 4, 4 + r.data.readUInt32BE(0)))
  }
  expect(names).toEqual(['disk', 'ro'])
  c.sendOption(P.NBD_OPT_LIST, Buffer.from('x'))
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
  c.destroy()
})

test('INFO reports size, flags and block sizes, then the client may still GO', async () => {
  const c = await RawClient.connect(served.socket)
  await c.greet()
  c.sendOption(P.NBD_OPT_INFO, goData('ro', [P.NBD_INFO_BLOCK_SIZE]))
  const infos = new Map<number, Buffer>()
  for (let r = await c.optionReply(); r.type !== P.NBD_REP_ACK; r = await c.optionReply()) {
    expect(r).toMatchObject({ option: P.NBD_OPT_INFO, type: P.NBD_REP_INFO })
    infos.set(r.data.readUInt16BE(0), r.data)
  }
  const exp = infos.get(P.NBD_INFO_EXPORT)!
  expect(Number(exp.readBigUInt64BE(2))).toBe(1 << 20)
  const flags = exp.readUInt16BE(10)
  expect(flags & P.NBD_FLAG_READ_ONLY).toBeTruthy()
  expect(flags & P.NBD_FLAG_SEND_WRITE_ZEROES).toBe(0)
  expect(flags & (P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_CAN_MULTI_CONN)).toBe(P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_CAN_MULTI_CONN)
  expect(flags & P.NBD_FLAG_SEND_TRIM).toBe(0)
  const bs = infos.get(P.NBD_INFO_BLOCK_SIZE)!
  expect([bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)]).toEqual([512, 4096, 32 * 1024 * 1024])
  c.sendOption(P.NBD_OPT_GO, goData('disk'))
  let r = await c.optionReply()
  while (r.type === P.NBD_REP_INFO) r = await c.optionReply()
  expect(r.type).toBe(P.NBD_REP_ACK)
  c.request(P.NBD_CMD_READ, 7, 0, 512)
  expect(await c.simpleReply(512)).toMatchObject({ error: 0, handle: 7 })
  c.destroy()
})

test('unknown export, unknown option, bad INFO payload and STARTTLS (no TLS configured) get error replies and the handshake goes on', async () => {
  const c = await RawClient.connect(served.socket)
  await c.greet()
  c.sendOption(P.NBD_OPT_GO, goData('nope'))
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_UNKNOWN)
  c.sendOption(4242, Buffer.from('whatever'))
  expect(await c.optionReply()).toMatchObject({ option: 4242, type: P.NBD_REP_ERR_UNSUP })
  c.sendOption(P.NBD_OPT_STARTTLS)
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_POLICY)
  c.sendOption(P.NBD_OPT_SET_META_CONTEXT, Buffer.alloc(8)) // before STRUCTURED_REPLY: refused
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
  c.sendOption(P.NBD_OPT_INFO, Buffer.concat([goData('disk'), Buffer.from([0])]))
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
  c.sendOption(P.NBD_OPT_STRUCTURED_REPLY, Buffer.from([1]))
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
  c.sendOption(P.NBD_OPT_GO, goData('disk'))
  let r = await c.optionReply()
  while (r.type === P.NBD_REP_INFO) r = await c.optionReply()
  expect(r.type).toBe(P.NBD_REP_ACK)
  c.request(P.NBD_CMD_READ, 8, 0, 512)
  expect(await c.simpleReply(512)).toMatchObject({ error: 0, handle: 8 })
  c.destroy()
})

test('GO after STRUCTURED_REPLY: reads come back as OFFSET_DATA chunks, errors as ERROR chunks', async () => {
  const c = await RawClient.connect(served.socket)
  await c.open('disk', true)
  c.request(P.NBD_CMD_WRITE, 1, 4096, 512, 0, Buffer.alloc(512, 0x5a))
  expect(await c.structuredReply()).toMatchObject({ type: P.NBD_REPLY_TYPE_NONE, flags: P.NBD_REPLY_FLAG_DONE, handle: 1 })
  c.request(P.NBD_CMD_READ, 2, 4096, 512)
  const read = await c.structuredReply()
  expect(read).toMatchObject({ type: P.NBD_REPLY_TYPE_OFFSET_DATA, flags: P.NBD_REPLY_FLAG_DONE, handle: 2 })
  expect(Number(read.payload.readBigUInt64BE(0))).toBe(4096)
  expect(read.payload.subarray(8)).toEqual(Buffer.alloc(512, 0x5a))
  c.request(P.NBD_CMD_READ, 3, 100, 512)
  const err = await c.structuredReply()
  expect(err).toMatchObject({ type: P.NBD_REPLY_TYPE_ERROR, flags: P.NBD_REPLY_FLAG_DONE, handle: 3 })
  expect(err.payload.readUInt32BE(0)).toBe(P.NBD_EINVAL)
  expect(err.payload.toString('utf8', 6, 6 + err.payload.readUInt16BE(4))).toMatch(/multiples of 512/)
  c.destroy()
})

test('EXPORT_NAME: size and flags, with the 124 zero bytes unless NO_ZEROES; an unknown name disconnects', async () => {
  for (const flags of [P.NBD_FLAG_C_FIXED_NEWSTYLE, P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES]) {
    const c = await RawClient.connect(served.socket)
    await c.greet(flags)
    c.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('disk'))
    const reply = await c.must(10)
    expect(Number(reply.readBigUInt64BE(0))).toBe(1 << 20)
    if ((flags & P.NBD_FLAG_C_NO_ZEROES) === 0) expect(await c.must(124)).toEqual(Buffer.alloc(124))
    c.request(P.NBD_CMD_FLUSH, 5, 0, 0)
    expect(await c.simpleReply()).toEqual({ error: 0, handle: 5, data: undefined })
    c.destroy()
  }
  const c = await RawClient.connect(served.socket)
  await c.greet()
  c.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('nope'))
  await c.closed
  expect(await c.read(1)).toBeUndefined()
})

test('ABORT is acknowledged and the server closes', async () => {
  const c = await RawClient.connect(served.socket)
  await c.greet()
  c.sendOption(P.NBD_OPT_ABORT)
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ACK)
  await c.closed
})
