// serveNbd's options: misuse is a TypeError/RangeError before anything listens; the unix
// socket is 0600; TCP binds 127.0.0.1 by default; close() is idempotent and frees the address.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import type { BlockDevice } from '../../io/block-device.js'
import { serveNbd } from '../../io/nbd/server.js'
import * as P from '../../io/nbd/protocol.js'
import { RawClient } from './raw-client.js'

let dir: string
beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-nbd-serve-')) })
afterEach(() => rmSync(dir, { recursive: true, force: true }))

test('misuse is refused with an error naming the value', async () => {
  const dev = new MemoryDevice(1 << 16)
  const socket = path.join(dir, 's')
  await expect(serveNbd({ exports: {}, socket })).rejects.toThrow(RangeError)
  await expect(serveNbd({ exports: { a: {} as BlockDevice }, socket })).rejects.toThrow(/export "a" is not a BlockDevice/)
  await expect(serveNbd({ exports: { a: { device: dev, readOnly: 'yes' as unknown as boolean } }, socket })).rejects.toThrow(/readOnly must be a boolean/)
  await expect(serveNbd({ exports: { a: { size: 1000, read: async () => {}, write: async () => {}, flush: async () => {}, close: async () => {} } }, socket })).rejects.toThrow(/size 1000/)
  await expect(serveNbd({ exports: { ['x'.repeat(4097)]: dev }, socket })).rejects.toThrow(/longer than 4096 bytes/)
  await expect(serveNbd({ exports: { a: dev } })).rejects.toThrow(/exactly one of socket/)
  await expect(serveNbd({ exports: { a: dev }, socket, port: 1 })).rejects.toThrow(/exactly one of socket/)
  await expect(serveNbd({ exports: { a: dev }, port: 70000 })).rejects.toThrow(/port 70000/)
  expect(existsSync(socket)).toBe(false)
})

test('the unix socket is created 0600, an existing path is not replaced, and close() removes the socket', async () => {
  const socket = path.join(dir, 'nbd.sock')
  const server = await serveNbd({ exports: { a: new MemoryDevice(1 << 16) }, socket })
  expect(server.address).toBe(socket)
  expect(statSync(socket).mode & 0o777).toBe(0o600)
  const taken = path.join(dir, 'file')
  writeFileSync(taken, 'keep me')
  await expect(serveNbd({ exports: { a: new MemoryDevice(1 << 16) }, socket: taken })).rejects.toThrow(/EADDRINUSE/)
  await server.close()
  await server.close()
  expect(existsSync(socket)).toBe(false)
})

test('TCP binds 127.0.0.1 by default and reports the real port; clients are independent', async () => {
  const dev = new MemoryDevice(1 << 16)
  const server = await serveNbd({ exports: { a: dev }, port: 0 })
  try {
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/)
    const port = Number(server.address.split(':')[1])
    const talk = async () => {
      const s = net.connect(port, '127.0.0.1')
      await new Promise((resolve) => s.once('connect', resolve))
      const greeting = await new Promise<Buffer>((resolve) => s.once('data', resolve))
      s.destroy()
      return greeting.readBigUInt64BE(0)
    }
    expect(await Promise.all([talk(), talk()])).toEqual([P.NBD_MAGIC, P.NBD_MAGIC])
  } finally {
    await server.close()
  }
})

test('a unix-socket client and RawClient agree on a full round-trip (sanity of the test client)', async () => {
  const socket = path.join(dir, 'nbd.sock')
  const dev = new MemoryDevice(1 << 16)
  const server = await serveNbd({ exports: { a: dev }, socket })
  try {
    const c = await RawClient.connect(socket)
    expect(await c.open('a')).toEqual({ size: 1 << 16, flags: expect.any(Number) })
    c.request(P.NBD_CMD_WRITE, 1, 512, 512, 0, Buffer.alloc(512, 3))
    expect(await c.simpleReply()).toEqual({ error: 0, handle: 1, data: undefined })
    const back = new Uint8Array(512)
    await dev.read(512, back)
    expect(back).toEqual(new Uint8Array(512).fill(3))
    c.destroy()
  } finally {
    await server.close()
  }
})
