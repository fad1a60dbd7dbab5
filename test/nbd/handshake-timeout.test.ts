// test/nbd/handshake-timeout.test.ts: a client that connects and never picks an export is
// dropped after serveNbd's handshakeTimeoutMs (slow or idle half-open clients must not pile up),
// while a client in transmission is never timed out, and bad values are refused up front.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { serveNbd, type NbdServer } from '../../nbd.js'
import * as P from '../../io/nbd/protocol.js'
import { RawClient } from './raw-client.js'

let stops: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of stops) await stop()
  stops = []
})

async function serve(handshakeTimeoutMs?: number): Promise<{ server: NbdServer; socket: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-nbd-timeout-'))
  const socket = path.join(dir, 'nbd.sock')
  const server = await serveNbd({ exports: { disk: new MemoryDevice(1 << 16) }, socket,
    ...(handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs }) })
  stops.push(async () => { await server.close(); rmSync(dir, { recursive: true, force: true }) })
  return { server, socket }
}

test('a client silent after the greeting, or stuck mid-option, is dropped at the deadline; others are served', async () => {
  const { socket } = await serve(300)
  const silent = await RawClient.connect(socket)
  const midOption = await RawClient.connect(socket)
  await midOption.greet()
  midOption.write(Buffer.from('IHAVEOPT').subarray(0, 5)) // half an option header, then nothing
  const started = performance.now()
  await Promise.all([silent.closed, midOption.closed])
  const waited = performance.now() - started
  expect(waited).toBeGreaterThanOrEqual(200)
  expect(waited).toBeLessThan(5000)

  const good = await RawClient.connect(socket)
  await good.open('disk') // greets, then GO
  await new Promise((resolve) => setTimeout(resolve, 600)) // twice the deadline, idle in transmission
  good.request(P.NBD_CMD_READ, 1, 0, 512)
  expect(await good.simpleReply(512)).toMatchObject({ error: 0, handle: 1 })
  good.socket.destroy()
})

test('handshakeTimeoutMs must be a positive number or Infinity', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-nbd-timeout-'))
  try {
    for (const bad of [0, -1, Number.NaN, '10' as unknown as number]) {
      await expect(serveNbd({ exports: { disk: new MemoryDevice(4096) }, socket: path.join(dir, 's'), handshakeTimeoutMs: bad }))
        .rejects.toThrow(/handshakeTimeoutMs must be a positive number/)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const { socket } = await serve(Number.POSITIVE_INFINITY)
  const idle = await RawClient.connect(socket)
  let closed = false
  void idle.closed.then(() => { closed = true })
  await new Promise((resolve) => setTimeout(resolve, 300))
  expect(closed).toBe(false)
  idle.socket.destroy()
})
