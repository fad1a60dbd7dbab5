// The READ reply pool (BufferPool) and the writer that recycles into it (ReplyWriter): a buffer
// is never held by two owners, the pool keeps what its cap allows, and a reply goes back only
// after the socket's write callback; end to end, a client that reads its replies late gets each
// with its own bytes.
import { Writable } from 'node:stream'
import type { Socket } from 'node:net'
import fc from 'fast-check'
import { afterEach, expect, test } from 'vitest'
import { BufferPool } from '../../io/nbd/buffer-pool.js'
import * as P from '../../io/nbd/protocol.js'
import { ReplyWriter } from '../../io/nbd/reply-writer.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { pattern, RawClient, startServer } from './raw-client.js'

let stops: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop()
})

test('the pool never hands out a buffer that is still held, and keeps at most its cap', () => {
  const op = fc.oneof(fc.record({ acquire: fc.constantFrom(512, 4096, 4112) }), fc.record({ release: fc.nat() }))
  fc.assert(fc.property(fc.nat({ max: 40_000 }), fc.array(op, { maxLength: 200 }), (cap, ops) => {
    const pool = new BufferPool(cap, 4096)
    const held: Buffer[] = []
    for (const o of ops) {
      if ('acquire' in o) {
        const b = pool.acquire(o.acquire)
        expect(b.length).toBe(o.acquire)
        expect(held.includes(b), 'handed out while held').toBe(false)
        held.push(b)
      } else if (held.length > 0) {
        pool.release(held.splice(o.release % held.length, 1)[0]!)
      }
      expect(pool.bytes).toBeLessThanOrEqual(cap)
    }
  }))
})

test('the pool reuses a released buffer, starts new ones zeroed, and refuses a view or a second release', () => {
  const pool = new BufferPool(1 << 20, 1 << 16)
  const a = pool.acquire(4096)
  expect(a.every((x) => x === 0)).toBe(true)
  a.fill(7)
  pool.release(a)
  expect(pool.bytes).toBe(4096)
  expect(pool.acquire(512)).not.toBe(a) // sizes are kept apart
  const again = pool.acquire(4096)
  expect(again).toBe(a)
  expect(pool.bytes).toBe(0)
  pool.release(again)
  expect(() => pool.release(again)).toThrow(/released twice/)
  expect(() => pool.release(pool.acquire(8192).subarray(16))).toThrow(RangeError)
  const big = pool.acquire((1 << 16) + 1)
  pool.release(big) // longer than maxSize: dropped
  expect(pool.acquire((1 << 16) + 1)).not.toBe(big)
  expect(() => new BufferPool(-1, 0)).toThrow(RangeError)
})

/** A stream that holds each write until the test completes it, like a socket whose client is not reading. */
class HeldStream extends Writable {
  readonly pending: Array<{ chunk: Buffer; done: (error?: Error | null) => void }> = []
  writevCalls = 0
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (error?: Error | null) => void): void {
    this.pending.push({ chunk, done })
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, done: (error?: Error | null) => void): void {
    this.writevCalls++
    const last = chunks.length - 1
    chunks.forEach(({ chunk }, i) => this.pending.push({ chunk, done: i === last ? done : () => {} }))
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

test('the writer gives a pooled reply back only from its write callback, and batches one turn into one writev', async () => {
  const released: Buffer[] = []
  const pool = { release: (b: Buffer) => released.push(b) } as unknown as BufferPool
  const stream = new HeldStream()
  stream.on('error', () => {}) // the failed write below
  const writer = new ReplyWriter(stream as unknown as Socket, pool)
  const replies = [Buffer.alloc(16, 1), Buffer.alloc(16, 2), Buffer.alloc(16, 3)]
  writer.send(replies[0]!, true)
  writer.send(replies[1]!, false)
  writer.send(replies[2]!, true)
  await tick()
  expect(stream.writevCalls).toBe(1)
  expect(stream.pending.map((p) => p.chunk[0])).toEqual([1, 2, 3])
  expect(released, 'released before the socket wrote it').toEqual([])
  stream.pending.at(-1)!.done()
  await tick()
  expect(released).toEqual([replies[0], replies[2]])
  // A failed write recycles nothing from then on: callbacks may come out of order.
  // A lone request's reply (batch false) is written at once, not at the turn's end.
  writer.send(Buffer.alloc(16, 4), true, false)
  expect(stream.pending.at(-1)!.chunk[0]).toBe(4)
  stream.pending.at(-1)!.done(new Error('EPIPE'))
  await tick()
  expect(released).toHaveLength(2)
})

test('a client that reads its replies late gets every READ with its own bytes (pooled buffers wait for the socket)', async () => {
  const SIZE = 4096
  const READS = 2048 // 8 MiB of replies, far past the socket's buffers, with the client paused
  const dev = new MemoryDevice(4 << 20)
  await dev.write(0, pattern(4 << 20, 5))
  const s = await startServer({ disk: dev })
  stops.push(() => s.stop())
  const c = await RawClient.connect(s.socket)
  await c.open('disk')
  c.socket.pause()
  const offsetOf = (h: number) => ((h * 17) % 1024) * SIZE
  // In waves of two replies (under the socket's high-water mark, so the server keeps reading):
  // new READs take buffers while earlier replies still wait in the socket.
  for (let h = 0; h < READS; h++) {
    c.request(P.NBD_CMD_READ, h, offsetOf(h), SIZE)
    if (h % 2 === 1) await new Promise((resolve) => setImmediate(resolve))
  }
  await new Promise((resolve) => setTimeout(resolve, 100))
  c.socket.resume()
  const whole = Buffer.from(pattern(4 << 20, 5))
  const seen = new Set<number>()
  for (let n = 0; n < READS; n++) {
    const r = await c.simpleReply(SIZE)
    expect(r?.error).toBe(0)
    // A buffer reused too early would carry a later reply twice (its header too) and lose this one.
    expect(seen.has(r!.handle), `reply ${r!.handle} twice`).toBe(false)
    seen.add(r!.handle)
    expect(r!.data!.equals(whole.subarray(offsetOf(r!.handle), offsetOf(r!.handle) + SIZE)), `reply ${r!.handle}`).toBe(true)
  }
  expect(seen.size).toBe(READS)
  c.request(P.NBD_CMD_DISC, 0, 0, 0)
  await c.closed
})
