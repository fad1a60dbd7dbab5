// The server's byte count over random clients (seeded; SNAPCOW_BUDGET_SEED replays, and
// SNAPCOW_BUDGET_CLIENTS sizes it): READs and WRITEs of 4 KiB to 32 MiB, some failing on the
// device, clients that stop reading, leave with DISC, or vanish mid-request. Whatever they do,
// every byte charged comes back once they are gone (a leak would stall later clients for good),
// the count never passes its bound, and a client that reads everything gets every reply.
import { expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { FaultDevice } from '../../testing/fault-device.js'
import { seededRandom } from '../../testing/seeded-random.js'
import { pattern, RawClient, startServer } from './raw-client.js'

const MiB = 1024 * 1024
const CLIENTS = Number(process.env.SNAPCOW_BUDGET_CLIENTS ?? 16)
const SEED = process.env.SNAPCOW_BUDGET_SEED !== undefined ? Number(process.env.SNAPCOW_BUDGET_SEED) : Math.floor(Math.random() * 2 ** 31)
const LIMIT = 64 * MiB
const SIZE = 96 * MiB
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test(`${CLIENTS} random clients give back every byte they made the server hold`, async () => {
  console.info(`buffer budget property: seed ${SEED} (replay: SNAPCOW_BUDGET_SEED=${SEED}), ${CLIENTS} clients`)
  const random = seededRandom(SEED)
  const below = (n: number) => Math.floor(random() * n)
  const disk = new FaultDevice(new MemoryDevice(SIZE))
  const { server, socket, stop } = await startServer({ disk }, undefined, { maxBufferedBytes: LIMIT })
  let peak = 0
  const watch = setInterval(() => { peak = Math.max(peak, server.bufferedBytes) }, 1)
  try {
    for (let wave = 0; wave < CLIENTS; wave += 4) {
      // Four clients at a time; the device fails now and then.
      if (random() < 0.8) disk.arm({ op: random() < 0.5 ? 'read' : 'write', nth: 1 + below(3), mode: 'once' })
      else disk.disarm()
      await Promise.all([0, 1, 2, 3].filter((k) => wave + k < CLIENTS).map(async () => {
        const client = await RawClient.connect(socket)
        await client.open('disk')
        const count = 1 + below(6)
        const sizes: number[] = []
        for (let h = 0; h < count; h++) {
          const length = [4096, 64 * 1024, MiB, 8 * MiB, 32 * MiB][below(5)]!
          const offset = below((SIZE - length) / 4096) * 4096
          sizes.push(random() < 0.5 ? length : 0)
          if (sizes[h]! > 0) client.request(P.NBD_CMD_READ, h, offset, length)
          else client.request(P.NBD_CMD_WRITE, h, offset, length, random() < 0.3 ? P.NBD_CMD_FLAG_FUA : 0, pattern(length, h))
        }
        const ending = below(4)
        if (ending === 0) { // reads every reply
          for (let h = 0; h < count; h++) {
            const reply = await client.simpleReply()
            expect(reply).toBeDefined()
            if (reply!.error === 0 && sizes[reply!.handle]! > 0) await client.must(sizes[reply!.handle]!)
          }
          client.request(P.NBD_CMD_DISC, count, 0, 0)
        } else if (ending === 1) { // stops reading, then vanishes
          client.socket.pause()
          await sleep(below(30))
          client.destroy()
        } else if (ending === 2) { // DISC at once: the server finishes what it accepted, then hangs up
          client.request(P.NBD_CMD_DISC, count, 0, 0)
          client.socket.pause()
          await sleep(below(30))
          client.destroy()
        } else { // vanishes mid-request: half a header, or half a payload
          client.write(Buffer.alloc(below(2) === 0 ? 13 : 28 + 100).fill(0x25, 0, 4))
          client.destroy()
        }
      }))
    }
    disk.disarm()
    for (const end = Date.now() + 10_000; server.bufferedBytes !== 0 && Date.now() < end;) await sleep(10)
    expect(server.bufferedBytes, 'bytes still counted after every client left').toBe(0)
    // Bound: the limit plus at most one largest request per connection (4 at a time).
    expect(peak).toBeLessThanOrEqual(LIMIT + 4 * 32 * MiB)
    // And the server still serves, at full size.
    const last = await RawClient.connect(socket)
    await last.open('disk')
    last.request(P.NBD_CMD_WRITE, 1, 0, 32 * MiB, 0, pattern(32 * MiB, 7))
    expect((await last.simpleReply())?.error).toBe(0)
    last.request(P.NBD_CMD_READ, 2, 0, 32 * MiB)
    const read = await last.simpleReply(32 * MiB)
    expect(read?.error).toBe(0)
    expect(read!.data!.equals(Buffer.from(pattern(32 * MiB, 7)))).toBe(true)
    last.destroy()
  } finally {
    clearInterval(watch)
    await stop()
  }
}, 120_000)
