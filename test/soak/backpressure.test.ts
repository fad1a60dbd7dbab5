// Backpressure (issue 13 item 6). A client that sends many 1 MiB READs and stops reading its
// replies must not make `snapcow serve` buffer them all: the connection stops reading requests
// (MAX_IN_FLIGHT, socket pause), other clients are served meanwhile, and every reply arrives
// once it reads again. A slow COW device under many origin writes in flight keeps copies in
// flight at the origin's cowThreshold, each connection at its request window, and throughput
// bounded by window / delay: it slows, it does not stall or pile up.
import { expect, test } from 'vitest'
import { openOrigin } from '../../actors/origin-volume.js'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { RawClient, startServer } from '../nbd/raw-client.js'
import { initialBytes, MiB, serveImages } from './served.js'
import { NbdSession } from './session.js'
import { figure, SOAK } from './sizes.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test('a client that stops reading replies: the server buffers at most about a window of them and serves others', async () => {
  const READS = 320 // 320 MiB of replies if the server kept reading requests
  const served = await serveImages(64 * MiB, 1)
  try {
    const rssBefore = served.rss()
    const slow = await RawClient.connect(served.socket)
    await slow.open('origin')
    slow.socket.pause() // from here on the client takes nothing off the socket
    for (let h = 0; h < READS; h++) slow.request(P.NBD_CMD_READ, h, (h % 63) * MiB, MiB)
    // Meanwhile another client does verified I/O, and the server's RSS is watched.
    const other = await NbdSession.open(served.socket, 'snap1')
    let peak = 0
    const until = Date.now() + 1500
    let served4k = 0
    while (Date.now() < until) {
      const at = (served4k % 1000) * 4096
      expect((await other.read(at, 4096)).equals(initialBytes(at, 4096))).toBe(true)
      served4k++
      peak = Math.max(peak, served.rss())
    }
    const growth = peak - rssBefore
    figure('slow reader', { requests: READS, requestMiB: 1, rssBeforeMiB: (rssBefore / MiB).toFixed(1), peakGrowthMiB: (growth / MiB).toFixed(1), otherClientReads: served4k })
    // 64 replies of 1 MiB in flight plus socket buffers and allocator slack; not 320.
    expect(growth, 'RSS growth while the client did not read').toBeLessThan(160 * MiB)
    expect(served4k).toBeGreaterThan(10)
    // Reading again, the client gets every reply, each with the right bytes.
    slow.socket.resume()
    const seen = new Set<number>()
    for (let n = 0; n < READS; n++) {
      const r = await slow.simpleReply(MiB)
      expect(r?.error).toBe(0)
      const h = r!.handle
      if (h % 97 === 0) expect(r!.data!.equals(initialBytes((h % 63) * MiB, MiB)), `reply ${h}`).toBe(true)
      seen.add(h)
    }
    expect(seen.size).toBe(READS)
    slow.destroy()
    await other.disconnect()
  } finally {
    const { code, out } = await served.stop()
    expect(code, out).toBe(0)
  }
}, 120_000)

/** Wraps a COW device: writes take `delayMs`; records each write's start and end for counting. */
function slowCow(inner: BlockDevice, delayMs: number, log: Array<{ chunk: number; start: number; end: number }>): BlockDevice {
  let tick = 0
  return {
    get size() { return inner.size },
    supports: inner.supports,
    read: (offset, buffer) => inner.read(offset, buffer),
    async write(offset, data) {
      const entry = { chunk: Math.floor(offset / 4096), start: tick++, end: Infinity }
      log.push(entry)
      await sleep(delayMs)
      await inner.write(offset, data)
      entry.end = tick++
    },
    flush: () => inner.flush(),
    close: () => inner.close(),
  }
}

/** Counts calls in progress on `device.write`, keeping the peak. */
function countingWrites(device: BlockDevice): { device: BlockDevice; peak: () => number } {
  let now = 0
  let peak = 0
  return {
    peak: () => peak,
    device: {
      get size() { return device.size },
      supports: device.supports,
      read: (offset, buffer) => device.read(offset, buffer),
      async write(offset, data) {
        peak = Math.max(peak, ++now)
        try { await device.write(offset, data) } finally { now-- }
      },
      flush: () => device.flush(),
      close: () => device.close(),
    },
  }
}

test('a slow COW device: copies in flight stay at cowThreshold, requests at the connection window; throughput is window / delay', async () => {
  const WINDOW = 8
  const CONNECTIONS = 4
  const QUEUED = 200 // writes each client sends at once, far more than the server's window of 64
  const seconds = Math.min(SOAK.seconds / 3, 4) // per delay
  const results: Array<{ delayMs: number; writes: number; writesPerSecond: number; copiesPeak: number; requestsPeak: number; rssGrowthMiB: number }> = []
  for (const delayMs of [1, 4, 16]) {
    const log: Array<{ chunk: number; start: number; end: number }> = []
    const cowMemory = new MemoryDevice(64 * MiB)
    const origin = await openOrigin(new MemoryDevice(32 * MiB), { cowThreshold: WINDOW })
    await origin.createSnapshot(slowCow(cowMemory, delayMs, log), { chunkSize: 4096 })
    const counted = countingWrites(origin)
    const served = await startServer({ origin: counted.device })
    const rssBefore = process.memoryUsage().rss
    let rssPeak = rssBefore
    let writes = 0
    const started = Date.now()
    const deadline = started + seconds * 1000
    try {
      // Each client writes chunks no one wrote before (each needs a copy), QUEUED at a time.
      const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => NbdSession.open(served.socket, 'origin')))
      let nextChunk = 0
      await Promise.all(clients.map(async (s) => {
        while (Date.now() < deadline && nextChunk < 8192 - QUEUED) {
          const batch = Array.from({ length: QUEUED }, () => s.write(nextChunk++ * 4096, new Uint8Array(4096).fill(1)))
          await Promise.all(batch)
          writes += QUEUED
          rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
        }
      }))
      for (const s of clients) await s.disconnect()
    } finally {
      await served.stop()
    }
    const elapsed = (Date.now() - started) / 1000
    // Data chunks (not the header or metadata areas) from the store itself; then the most
    // copies that were ever on the COW device at once.
    const data = new Set((await readCowStore(cowMemory)).exceptions.map(([, newChunk]) => newChunk))
    const events = log.filter((e) => data.has(e.chunk)).flatMap((e) => [[e.start, 1], [e.end, -1]] as const).sort((a, b) => a[0] - b[0])
    let now = 0
    let copiesPeak = 0
    for (const [, d] of events) copiesPeak = Math.max(copiesPeak, (now += d))
    results.push({ delayMs, writes, writesPerSecond: Math.round(writes / elapsed), copiesPeak, requestsPeak: counted.peak(), rssGrowthMiB: Math.round((rssPeak - rssBefore) / MiB) })
    expect(data.size).toBe(writes)
    expect(copiesPeak, `copies in flight with cowThreshold ${WINDOW}, delay ${delayMs} ms`).toBe(WINDOW)
    expect(counted.peak(), 'origin writes in progress: at most the window of each connection').toBeLessThanOrEqual(CONNECTIONS * 64)
    // Each copy takes at least delayMs and at most WINDOW run at once.
    expect(writes / elapsed).toBeLessThanOrEqual((WINDOW * 1000) / delayMs + QUEUED * CONNECTIONS / elapsed)
    expect(writes).toBeGreaterThan(0)
    await origin.close()
  }
  // The figures show how throughput falls with the delay; each run above kept moving and stayed
  // under window / delay (comparing runs with each other would measure the machine's load).
  for (const r of results) figure('slow cow', { window: WINDOW, connections: CONNECTIONS, queuedPerClient: QUEUED, ...r })
}, 120_000)
