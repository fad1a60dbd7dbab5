// Reply builders byte by byte where the fields are wide: a READ reply's offset past 4 GiB, and
// a pooled buffer's old bytes overwritten in the header.
import { expect, test } from 'vitest'
import { BufferPool } from '../../io/nbd/buffer-pool.js'
import * as P from '../../io/nbd/protocol.js'
import { doneReply, readReply, simpleReply, structuredNone } from '../../io/nbd/replies.js'

test('a structured READ reply carries an offset past 4 GiB in full', () => {
  const offset = 5 * 2 ** 32 + 4096 * 3
  const { reply, data } = readReply(0x1122334455667788n, offset, 512, true)
  expect(reply.readBigUInt64BE(8)).toBe(0x1122334455667788n)
  expect(reply.readUInt32BE(16)).toBe(8 + 512)
  expect(reply.readBigUInt64BE(20)).toBe(BigInt(offset))
  expect(data.length).toBe(512)
  expect(data.byteOffset - reply.byteOffset).toBe(28)
})

test('replies built in a recycled buffer are byte-identical to fresh ones', () => {
  const pool = new BufferPool(1 << 20, 1 << 20)
  for (const structured of [false, true]) {
    const size = structured ? P.STRUCTURED_REPLY_HEADER_BYTES : P.SIMPLE_REPLY_BYTES
    pool.release(Buffer.alloc(size, 0xee))
    expect(doneReply(7n, structured, pool)).toEqual(structured ? structuredNone(7n) : simpleReply(7n, 0))
    const start = structured ? 28 : 16
    pool.release(Buffer.alloc(start + 512, 0xee))
    const { reply } = readReply(9n, 2 ** 33, 512, structured, pool)
    expect(reply.subarray(0, start)).toEqual(readReply(9n, 2 ** 33, 512, structured).reply.subarray(0, start))
  }
})
