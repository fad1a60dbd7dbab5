// The request parser fed at every split point (as pg-protocol tests theirs), and the table of
// requests the server refuses (checkRequest).
import { expect, test } from 'vitest'
import { ByteQueue } from '../../io/nbd/byte-queue.js'
import * as P from '../../io/nbd/protocol.js'
import { checkRequest, RequestParser, type ParseResult } from '../../io/nbd/requests.js'
import { pattern, requestBytes } from './raw-client.js'

const stream = Buffer.concat([
  requestBytes(P.NBD_CMD_READ, 1, 4096, 512),
  requestBytes(P.NBD_CMD_WRITE, 2, 0, 1024, P.NBD_CMD_FLAG_FUA, pattern(1024, 2)),
  requestBytes(P.NBD_CMD_FLUSH, 3, 0, 0),
  requestBytes(P.NBD_CMD_WRITE, 4, 512, 512, 0, pattern(512, 4)),
])

function parseAll(chunks: Buffer[]): Array<NonNullable<ParseResult>> {
  const queue = new ByteQueue()
  const parser = new RequestParser(queue)
  const out: Array<NonNullable<ParseResult>> = []
  for (const chunk of chunks) {
    queue.push(chunk)
    for (let r = parser.next(); r !== undefined; r = parser.next()) out.push(r)
  }
  return out
}

test('the parser yields the same requests whatever the chunking (every split point, and byte by byte)', () => {
  const whole = parseAll([stream])
  expect(whole.map((r) => r.kind === 'request' && [r.request.type, Number(r.request.handle), r.request.offset, r.request.length, r.request.flags])).toEqual([
    [P.NBD_CMD_READ, 1, 4096, 512, 0],
    [P.NBD_CMD_WRITE, 2, 0, 1024, P.NBD_CMD_FLAG_FUA],
    [P.NBD_CMD_FLUSH, 3, 0, 0, 0],
    [P.NBD_CMD_WRITE, 4, 512, 512, 0],
  ])
  const payloads = (rs: Array<NonNullable<ParseResult>>) => rs.map((r) => (r.kind === 'request' ? r.request.payload?.toString('hex') : r.reason))
  expect(payloads(whole)[1]).toBe(Buffer.from(pattern(1024, 2)).toString('hex'))
  for (let cut = 1; cut < stream.length; cut++) {
    expect(payloads(parseAll([stream.subarray(0, cut), stream.subarray(cut)])), `split at ${cut}`).toEqual(payloads(whole))
  }
  const bytes = [...stream].map((b) => Buffer.from([b]))
  expect(payloads(parseAll(bytes))).toEqual(payloads(whole))
})

test('offsets are read as u64: past 4 GiB exactly, past 2^53 rounded as Number(u64) rounds', () => {
  for (const offset of [5n * 2n ** 32n + 4096n, 2n ** 53n + 1n, 2n ** 64n - 1n]) {
    const queue = new ByteQueue()
    const bytes = requestBytes(P.NBD_CMD_READ, 1, 0, 512)
    bytes.writeBigUInt64BE(offset, 16)
    queue.push(bytes)
    const r = new RequestParser(queue).next()
    expect(r?.kind === 'request' && r.request.offset).toBe(Number(offset))
  }
})

test('a payload inside one chunk is handed out as a view of it, not a copy', () => {
  const queue = new ByteQueue()
  const parser = new RequestParser(queue)
  const chunk = requestBytes(P.NBD_CMD_WRITE, 9, 0, 512, 0, pattern(512, 9))
  queue.push(chunk)
  const r = parser.next()
  expect(r?.kind === 'request' && r.request.payload?.buffer).toBe(chunk.buffer)
})

test('a bad magic and a WRITE over the maximum block size are fatal; an incomplete request is not yet anything', () => {
  expect(parseAll([requestBytes(P.NBD_CMD_READ, 1, 0, 512, 0, undefined, 0x12345678)])[0]).toMatchObject({ kind: 'fatal' })
  expect(parseAll([requestBytes(P.NBD_CMD_WRITE, 1, 0, P.MAX_BLOCK_BYTES + 512)])[0]).toMatchObject({ kind: 'fatal' })
  expect(parseAll([requestBytes(P.NBD_CMD_WRITE, 1, 0, 4096, 0, pattern(4096, 1)).subarray(0, 1000)])).toEqual([])
})

test('checkRequest refuses what the server does not do, with the spec\'s error', () => {
  const limits = { size: 1 << 20, readOnly: false }
  const check = (type: number, offset: number, length: number, flags = 0, l = limits) =>
    checkRequest({ type, flags, handle: 1n, offset, length }, l)?.error
  expect(check(P.NBD_CMD_READ, 0, 4096)).toBeUndefined()
  expect(check(P.NBD_CMD_WRITE, (1 << 20) - 512, 512, P.NBD_CMD_FLAG_FUA)).toBeUndefined()
  expect(check(P.NBD_CMD_WRITE_ZEROES, 0, 1 << 20, P.NBD_CMD_FLAG_NO_HOLE)).toBeUndefined()
  expect(check(P.NBD_CMD_CACHE, 0, 4096)).toBeUndefined()
  expect(check(P.NBD_CMD_FLUSH, 0, 0)).toBeUndefined()
  expect(check(P.NBD_CMD_TRIM, 0, 4096)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_BLOCK_STATUS, 0, 4096)).toBe(P.NBD_EINVAL)
  expect(check(99, 0, 4096)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_READ, 0, 4096, P.NBD_CMD_FLAG_DF)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_READ, 100, 512)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_WRITE, 0, 100)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_READ, 0, 0)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_READ, (1 << 20) - 512, 1024)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_READ, 2 ** 60, 512)).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_WRITE, 1 << 20, 512)).toBe(P.NBD_ENOSPC)
  expect(check(P.NBD_CMD_WRITE_ZEROES, 0, (1 << 20) + 512)).toBe(P.NBD_ENOSPC)
  expect(check(P.NBD_CMD_READ, 0, P.MAX_BLOCK_BYTES + 512, 0, { size: 2 ** 40, readOnly: false })).toBe(P.NBD_EINVAL)
  expect(check(P.NBD_CMD_WRITE, 0, 512, 0, { ...limits, readOnly: true })).toBe(P.NBD_EPERM)
  expect(check(P.NBD_CMD_WRITE_ZEROES, 0, 512, 0, { ...limits, readOnly: true })).toBe(P.NBD_EPERM)
  expect(check(P.NBD_CMD_READ, 0, 512, 0, { ...limits, readOnly: true })).toBeUndefined()
})
