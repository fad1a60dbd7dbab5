// Load on `snapcow serve` (issue 13 item 5): 32 clients doing random verified I/O on the origin
// and two writable snapshots for SNAPCOW_SOAK_SECONDS. Each client owns a region on its export
// and checks every read against what it wrote; it also reads its region through another export,
// which nobody writes there, so it must still hold the origin's first bytes (copy-on-write seen
// from outside while the copies happen). Reports ops, throughput and the server's peak RSS.
import { expect, test } from 'vitest'
import { seededRandom } from '../../testing/seeded-random.js'
import { initialBytes, MiB, serveImages } from './served.js'
import { NbdSession } from './session.js'
import { figure, SOAK } from './sizes.js'

const CLIENTS = 32
const DEPTH = 4 // requests in flight per client
const BLOCK = 4096
const REGION = 2 * MiB
const SIZE = CLIENTS * REGION
const SEED = Number(process.env.SNAPCOW_SOAK_SEED ?? Date.now() % 1e9)
/** A bound far above what the server needs (about 100 MiB) and far below a leak of a minute's I/O. */
const PEAK_RSS_BOUND = 400 * MiB

interface Tally { ops: number; bytes: number; mismatches: string[] }

async function client(socket: string, exports: readonly string[], c: number, deadline: number, tally: Tally): Promise<void> {
  const random = seededRandom(SEED * 64 + c)
  const home = exports[c % exports.length]!
  const other = exports[(c + 1) % exports.length]!
  const base = c * REGION
  const model = initialBytes(base, REGION) // what the region holds on `home`
  const busy = new Set<number>() // blocks with a request in flight
  const main = await NbdSession.open(socket, home)
  const side = await NbdSession.open(socket, other)
  const lane = async () => {
    while (Date.now() < deadline) {
      const blocks = 1 + Math.floor(random() * 16)
      const first = Math.floor(random() * (REGION / BLOCK - blocks + 1))
      const span = Array.from({ length: blocks }, (_, i) => first + i)
      if (span.some((b) => busy.has(b))) continue
      for (const b of span) busy.add(b)
      const at = first * BLOCK
      const length = blocks * BLOCK
      const roll = random()
      if (roll < 0.45) {
        const data = Buffer.alloc(length)
        for (let i = 0; i < length; i += 4) data.writeUInt32LE((random() * 2 ** 32) >>> 0, i)
        await main.write(base + at, data, roll < 0.02)
        data.copy(model, at)
      } else if (roll < 0.9) {
        const got = await main.read(base + at, length)
        if (!got.equals(model.subarray(at, at + length))) tally.mismatches.push(`client ${c} ${home} @${base + at}+${length}`)
      } else if (roll < 0.98) {
        const got = await side.read(base + at, length)
        if (!got.equals(initialBytes(base + at, length))) tally.mismatches.push(`client ${c} ${other} (unwritten there) @${base + at}+${length}`)
      } else {
        await main.flush()
      }
      for (const b of span) busy.delete(b)
      tally.ops++
      tally.bytes += roll < 0.98 ? length : 0
    }
  }
  await Promise.all(Array.from({ length: DEPTH }, lane))
  // Finally the whole region, on both exports.
  if (!(await main.read(base, REGION)).equals(model)) tally.mismatches.push(`client ${c} ${home}: final read of the region`)
  if (!(await side.read(base, REGION)).equals(initialBytes(base, REGION))) tally.mismatches.push(`client ${c} ${other}: final read of the region`)
  await main.disconnect()
  await side.disconnect()
}

test(`${CLIENTS} clients, random verified I/O on origin and snapshots: no error, no mismatch, memory bounded`, async () => {
  const served = await serveImages(SIZE, 2, 2 * SIZE)
  const tally: Tally = { ops: 0, bytes: 0, mismatches: [] }
  const rss: number[] = []
  const sampler = setInterval(() => rss.push(served.rss()), 250)
  try {
    const started = Date.now()
    const cpuBefore = served.cpuSeconds()
    const deadline = started + SOAK.seconds * 1000
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(served.socket, served.exports, c, deadline, tally)))
    const seconds = (Date.now() - started) / 1000
    clearInterval(sampler)
    const peak = served.peakRss()
    figure('load', { seed: SEED, clients: CLIENTS, connections: 2 * CLIENTS, exports: served.exports.join('+'), seconds: seconds.toFixed(1), ops: tally.ops,
      opsPerSecond: (tally.ops / seconds).toFixed(0), MiBPerSecond: (tally.bytes / MiB / seconds).toFixed(1),
      serverCpuSeconds: (served.cpuSeconds() - cpuBefore).toFixed(1), peakRssMiB: (peak / MiB).toFixed(1), rssFirstMiB: ((rss[0] ?? 0) / MiB).toFixed(1), rssLastMiB: ((rss.at(-1) ?? 0) / MiB).toFixed(1) })
    expect(tally.mismatches, `seed ${SEED}`).toEqual([])
    expect(tally.ops).toBeGreaterThan(CLIENTS * DEPTH)
    expect(peak, `seed ${SEED}: peak RSS ${peak}`).toBeLessThan(PEAK_RSS_BOUND)
  } finally {
    clearInterval(sampler)
    const { code, out } = await served.stop()
    expect(code, out).toBe(0)
  }
}, SOAK.seconds * 1000 + 120_000)
