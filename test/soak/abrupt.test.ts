// Abrupt clients against `snapcow serve` (issue 13 item 4): thousands of connect/disconnect
// cycles ending every way a client can (reset mid-handshake, mid-request, mid-reply), writers
// reset with writes in flight, fio and qemu-io killed with SIGKILL. The server must not crash,
// its descriptors go back to where they were, its memory stays bounded, and every write it
// acknowledged is there afterwards. Sizes: test/soak/sizes.ts.
import { spawn } from 'node:child_process'
import { afterAll, beforeAll, expect, test } from 'vitest'
import * as P from '../../io/nbd/protocol.js'
import { seededRandom } from '../../testing/seeded-random.js'
import { RawClient, requestBytes } from '../nbd/raw-client.js'
import { initialBytes, MiB, serveImages, settleTo, type Served } from './served.js'
import { NbdSession } from './session.js'
import { figure, SOAK } from './sizes.js'
import { installed } from '../support/tools.js'

const BLOCK = 4096
const WRITERS = 8
const BLOCKS_PER_WRITER = 32
const ROUND_BYTES = WRITERS * BLOCKS_PER_WRITER * BLOCK
// The reset rounds use the start of the image, the fio and qemu-io clients its last 16 MiB.
const SIZE = Math.max(32 * MiB, SOAK.resets * ROUND_BYTES + 24 * MiB)
const SEED = Number(process.env.SNAPCOW_SOAK_SEED ?? Date.now() % 1e9)

let served: Served
let baselineFds: number
beforeAll(async () => {
  served = await serveImages(SIZE, 1, 2 * SIZE)
  // Warm up once so lazily opened things (the event loop's own descriptors) are in the baseline.
  const s = await NbdSession.open(served.socket, 'origin')
  await s.read(0, BLOCK)
  await s.disconnect()
  baselineFds = await settleTo(() => served.fds(), () => false, 300)
}, 60_000)
afterAll(async () => {
  const { code, out } = await served.stop()
  expect(code, out).toBe(0)
  expect(out).toMatch(/every write flushed/)
})

/** The server is alive, back to its baseline descriptors, and answers a fresh client correctly. */
async function serverIsWhole(): Promise<void> {
  const fds = await settleTo(() => served.fds(), (n) => n <= baselineFds)
  expect(fds, 'open descriptors after every client went away').toBe(baselineFds)
  const s = await NbdSession.open(served.socket, 'origin')
  expect((await s.read(SIZE - BLOCK, BLOCK)).equals(initialBytes(SIZE - BLOCK, BLOCK))).toBe(true)
  await s.disconnect()
}

const ENDINGS = ['at once', 'mid-handshake', 'DISC', 'mid-request header', 'mid-write payload', 'mid-reply', 'with reads in flight'] as const
type Ending = (typeof ENDINGS)[number]

async function cycle(socket: string, ending: Ending, random: () => number): Promise<void> {
  const c = await RawClient.connect(socket)
  const end = async () => { c.destroy(); await c.closed }
  if (ending === 'at once') return end()
  if (ending === 'mid-handshake') {
    await c.greet()
    c.write(Buffer.alloc(7)) // part of an option header
    return end()
  }
  await c.open(random() < 0.5 ? 'origin' : 'snap1')
  const at = Math.floor(random() * (SIZE / BLOCK - 256)) * BLOCK
  switch (ending) {
    case 'DISC':
      c.request(P.NBD_CMD_DISC, 1, 0, 0)
      await c.closed
      return
    case 'mid-request header':
      c.write(requestBytes(P.NBD_CMD_READ, 1, at, BLOCK).subarray(0, 1 + Math.floor(random() * 27)))
      return end()
    case 'mid-write payload':
      // The payload is the bytes already there, so a write the server did carry out changes nothing.
      c.write(requestBytes(P.NBD_CMD_WRITE, 1, SIZE - 2 * BLOCK, BLOCK, 0, initialBytes(SIZE - 2 * BLOCK, BLOCK)).subarray(0, 28 + Math.floor(random() * BLOCK)))
      return end()
    case 'mid-reply':
      c.request(P.NBD_CMD_READ, 1, at, MiB)
      await c.must(16 + Math.floor(random() * 4096))
      return end()
    case 'with reads in flight':
      for (let h = 1; h <= 32; h++) c.request(P.NBD_CMD_READ, h, at, 64 * 1024)
      return end()
  }
}

test('connect/disconnect cycles ending every way: no crash, descriptors back to baseline, memory bounded', async () => {
  const random = seededRandom(SEED)
  const rssBefore = served.rss()
  const started = Date.now()
  const counts = new Map<Ending, number>()
  for (let done = 0; done < SOAK.cycles; done += 8) {
    const batch = Array.from({ length: Math.min(8, SOAK.cycles - done) }, () => ENDINGS[Math.floor(random() * ENDINGS.length)]!)
    for (const e of batch) counts.set(e, (counts.get(e) ?? 0) + 1)
    await Promise.all(batch.map((e) => cycle(served.socket, e, random)))
  }
  const seconds = (Date.now() - started) / 1000
  await serverIsWhole()
  const rssAfter = served.rss()
  figure('cycles', { seed: SEED, cycles: SOAK.cycles, seconds: seconds.toFixed(1), perSecond: (SOAK.cycles / seconds).toFixed(0),
    rssBeforeMiB: (rssBefore / MiB).toFixed(1), rssAfterMiB: (rssAfter / MiB).toFixed(1), peakRssMiB: (served.peakRss() / MiB).toFixed(1),
    fds: `${served.fds()}/${baselineFds}`, ...Object.fromEntries(counts) })
  // Every 'mid-reply' cycle had a 1 MiB reply queued; a leak of those alone would pass this
  // bound after a few hundred cycles.
  expect(rssAfter - rssBefore, `seed ${SEED}: RSS grew from ${rssBefore} to ${rssAfter}`).toBeLessThan(96 * MiB)
}, 600_000)

/** Block contents that say which write made them: block number and generation, then a pattern. */
function blockData(block: number, gen: number): Buffer {
  const out = Buffer.alloc(BLOCK)
  for (let i = 0; i < BLOCK; i++) out[i] = (block * 31 + gen * 17 + i * 7) & 0xff
  out.writeUInt32BE(block, 0)
  out.writeUInt32BE(gen, 4)
  return out
}

test('writers reset with writes in flight: every acknowledged write is there, unacknowledged ones are old or new', async () => {
  const random = seededRandom(SEED + 1)
  let acknowledged = 0
  let lost = 0
  for (let round = 0; round < SOAK.resets; round++) {
    const exportName = round % 2 === 0 ? 'origin' : 'snap1'
    const first = round * WRITERS * BLOCKS_PER_WRITER
    const acked = new Array<number>(WRITERS * BLOCKS_PER_WRITER).fill(0)
    const sent = new Array<number>(WRITERS * BLOCKS_PER_WRITER).fill(0)
    const sessions = await Promise.all(Array.from({ length: WRITERS }, () => NbdSession.open(served.socket, exportName)))
    let stop = false
    // Each writer owns its blocks and keeps 16 writes in flight, one per lane; lane l writes
    // blocks l, l+16, … (BLOCKS_PER_WRITER is a multiple of 16), so no block has two at once.
    const loops = sessions.map(async (s, w) => {
      const lane = async (lane: number) => {
        for (let n = 0; !stop; n++) {
          const i = w * BLOCKS_PER_WRITER + ((lane + 16 * n) % BLOCKS_PER_WRITER)
          const gen = ++sent[i]!
          try {
            await s.write((first + i) * BLOCK, blockData(first + i, gen), random() < 0.1)
          } catch {
            return // the connection was reset
          }
          acked[i] = Math.max(acked[i]!, gen)
        }
      }
      await Promise.all(Array.from({ length: 16 }, (_, l) => lane(l)))
    })
    await new Promise((resolve) => setTimeout(resolve, 50 + random() * 250))
    stop = true
    for (const s of sessions) s.destroy()
    await Promise.all(loops)
    await settleTo(() => served.fds(), (n) => n <= baselineFds)
    const check = await NbdSession.open(served.socket, exportName)
    for (let i = 0; i < acked.length; i++) {
      const got = await check.read((first + i) * BLOCK, BLOCK)
      const ok = [acked[i]! === 0 ? initialBytes((first + i) * BLOCK, BLOCK) : undefined,
        ...Array.from({ length: sent[i]! - acked[i]! + 1 }, (_, k) => acked[i]! + k).filter((g) => g > 0).map((g) => blockData(first + i, g))]
      expect(ok.some((want) => want?.equals(got)), `seed ${SEED} round ${round} ${exportName} block ${first + i}: acked gen ${acked[i]}, sent ${sent[i]}, found gen ${got.readUInt32BE(4)} of block ${got.readUInt32BE(0)}`).toBe(true)
      acknowledged += acked[i]!
      if (sent[i]! > acked[i]! && got.equals(blockData(first + i, acked[i]!))) lost++
    }
    await check.disconnect()
  }
  await serverIsWhole()
  figure('resets', { seed: SEED, rounds: SOAK.resets, writers: WRITERS, acknowledgedWrites: acknowledged, unackedNotApplied: lost })
  expect(acknowledged).toBeGreaterThan(0)
}, 600_000)

const killTest = installed('fio') && installed('qemu-io') ? test : test.skip

killTest('fio and qemu-io killed with SIGKILL mid-I/O: the server goes on, descriptors back to baseline', async () => {
  const uri = (name: string) => `nbd+unix:///${name}?socket=${served.socket}`
  const region = `${SIZE - 16 * MiB}`
  const clients = [
    // --thread: fio's jobs are threads, so SIGKILL ends them all (forked jobs would live on).
    () => spawn('fio', ['--thread', '--name=soak', '--ioengine=nbd', `--uri=${uri('origin')}`, '--rw=randrw', '--bs=64k', '--iodepth=32',
      `--offset=${region}`, '--size=8M', '--time_based', '--runtime=60', '--numjobs=2']),
    () => spawn('qemu-io', ['-f', 'raw', ...Array.from({ length: 64 }, (_, i) => ['-c', `aio_write -P ${i & 0xff} ${SIZE - 8 * MiB + (i % 8) * MiB} 1M`]).flat(),
      '-c', 'aio_flush', ...Array.from({ length: 200 }, () => ['-c', `read 0 4M`]).flat(), uri('snap1')]),
  ]
  for (let k = 0; k < SOAK.kills; k++) {
    for (const make of clients) {
      const child = make()
      child.stdout?.resume()
      child.stderr?.resume()
      const exited = new Promise((resolve) => child.once('exit', resolve))
      // Once it is connected, give it a moment to have requests in flight, then kill it.
      await settleTo(() => served.fds(), (n) => n > baselineFds)
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(child.exitCode, 'the client was still running when killed').toBe(null)
      child.kill('SIGKILL')
      await exited
    }
  }
  await serverIsWhole()
  figure('kills', { killed: 2 * SOAK.kills, fds: `${served.fds()}/${baselineFds}`, rssMiB: (served.rss() / MiB).toFixed(1) })
}, 120_000)
