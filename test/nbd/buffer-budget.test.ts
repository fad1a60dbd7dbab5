// What clients can make the server hold (io/nbd/buffer-budget.ts): a client that sends the
// largest READs and reads no reply, or big WRITEs to a slow disk, once made the server buffer
// 64 × 32 MiB per connection (2 GiB, measured). Now each connection stops being read at 64 MiB
// held and all of them at the server's maxBufferedBytes (one holding nothing may still take one
// request), every byte comes back when a reply leaves or a client vanishes, and nothing stalls.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { ControlledDevice } from '../support/controlled-device.js'
import { RecordingDevice } from '../support/recording-device.js'
import { pattern, RawClient, startServer } from './raw-client.js'

const MiB = 1024 * 1024
const BIG = 32 * MiB // the largest request a client may send (MAX_BLOCK_BYTES)
const turns = async (n = 20) => { for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve)) }
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function until(what: string, condition: () => boolean, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !condition();) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`)
    await sleep(10)
  }
}

test('a client that sends 32 MiB READs and reads no reply makes the server hold at most 64 MiB; it gets every reply once it reads', async () => {
  const content = pattern(2 * BIG, 5)
  const device = new RecordingDevice(MemoryDevice.from(content))
  const reads = () => device.ops.filter((o) => o.op === 'read').length
  const { server, socket, stop } = await startServer({ origin: device })
  try {
    const client = await RawClient.connect(socket)
    await client.open('origin')
    client.socket.pause() // takes nothing off the socket from here on
    const READS = 6
    for (let h = 0; h < READS; h++) client.request(P.NBD_CMD_READ, h, (h % 2) * BIG, BIG)
    await until('two READs started', () => reads() >= 2, 20_000) // a slow machine takes its time
    await sleep(300) // and had the server gone on reading, more would start meanwhile
    expect(reads(), 'READs the server started while the client read nothing').toBeLessThanOrEqual(2)
    expect(server.bufferedBytes).toBeLessThanOrEqual(64 * MiB)
    client.socket.resume()
    for (let n = 0; n < READS; n++) {
      const reply = await client.simpleReply(BIG)
      expect(reply?.error).toBe(0)
      expect(reply!.data!.equals(Buffer.from(content.subarray((reply!.handle % 2) * BIG, (reply!.handle % 2) * BIG + BIG))), `READ ${reply!.handle}`).toBe(true)
    }
    expect(reads()).toBe(READS)
    await until('the server holds nothing', () => server.bufferedBytes === 0)
    client.destroy()
  } finally {
    await stop()
  }
}, 60_000)

test('maxBufferedBytes holds every client together: big WRITEs to a stalled disk stop being read, and all complete once it moves', async () => {
  const disk = new ControlledDevice(new MemoryDevice(128 * MiB), 'disk')
  const { server, socket, stop } = await startServer({ disk }, undefined, { maxBufferedBytes: 32 * MiB })
  try {
    const WRITE = 8 * MiB
    const CLIENTS = 4
    const EACH = 4
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => RawClient.connect(socket)))
    for (const c of clients) await c.open('disk')
    clients.forEach((c, k) => {
      for (let h = 0; h < EACH; h++) c.request(P.NBD_CMD_WRITE, h, (k * EACH + h) * WRITE, WRITE, 0, pattern(WRITE, k * EACH + h))
    })
    await until('four writes started', () => disk.find('write').length >= 4, 20_000)
    await sleep(300) // more would start meanwhile had the server gone on reading
    // 32 MiB of 8 MiB writes, plus one for each other client (one that holds nothing may take one); not all 16.
    const started = disk.find('write').length
    expect(started, `writes started: ${disk.describe()}`).toBeGreaterThanOrEqual(4)
    expect(started).toBeLessThanOrEqual(32 * MiB / WRITE + CLIENTS - 1)
    expect(server.bufferedBytes).toBe(started * WRITE)
    disk.passThrough = () => true
    disk.releaseAll()
    for (const c of clients) {
      for (let n = 0; n < EACH; n++) expect((await c.simpleReply())?.error).toBe(0)
    }
    for (let i = 0; i < CLIENTS * EACH; i++) {
      const back = new Uint8Array(WRITE)
      await disk.inner.read(i * WRITE, back)
      expect(Buffer.from(back).equals(Buffer.from(pattern(WRITE, i))), `write ${i}`).toBe(true)
    }
    expect(server.bufferedBytes).toBe(0)
    for (const c of clients) c.destroy()
  } finally {
    await stop()
  }
}, 60_000)

test('clients that vanish holding replies give every byte back: the server is not left full for the next client', async () => {
  const { server, socket, stop } = await startServer({ origin: MemoryDevice.from(pattern(2 * BIG, 9)) }, undefined, { maxBufferedBytes: 64 * MiB })
  try {
    for (let round = 0; round < 6; round++) {
      const client = await RawClient.connect(socket)
      await client.open('origin')
      client.socket.pause()
      for (let h = 0; h < 4; h++) client.request(P.NBD_CMD_READ, h, (h % 2) * BIG, BIG)
      await until('the client holds replies', () => server.bufferedBytes > 0)
      client.destroy() // with replies unsent
      await until('the vanished client\'s bytes are given back', () => server.bufferedBytes === 0)
    }
    // Six clients each left up to 64 MiB behind: had any of it leaked, this one would stall.
    const next = await RawClient.connect(socket)
    await next.open('origin')
    for (let h = 0; h < 4; h++) next.request(P.NBD_CMD_READ, h, 0, BIG)
    for (let h = 0; h < 4; h++) expect((await next.simpleReply(BIG))?.error).toBe(0)
    next.destroy()
    await turns()
  } finally {
    await stop()
  }
}, 60_000)

test('maxBufferedBytes must be a whole number of bytes of at least one largest request', async () => {
  for (const bad of [0, -1, 1.5, BIG - 1, '64M', Number.NaN]) {
    await expect(startServer({ origin: new MemoryDevice(MiB) }, undefined, { maxBufferedBytes: bad as number }))
      .rejects.toThrow(/maxBufferedBytes must be a whole number of bytes of at least 33554432/)
  }
})
