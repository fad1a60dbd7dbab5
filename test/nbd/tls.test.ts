// NBD_OPT_STARTTLS byte by byte: `require` refuses everything but STARTTLS/ABORT before TLS and
// leaks no export name or size; haggling restarts inside TLS (PSK over TLS 1.3 and 1.2, X.509);
// bad keys, garbage instead of a ClientHello and protocol breaches end only their connection.
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import * as P from '../../io/nbd/protocol.js'
import { serveNbd, type ServeNbdOptions } from '../../io/nbd/server.js'
import { parsePskFile } from '../../io/nbd/tls.js'
import { goData, pattern, RawClient, startServer } from './raw-client.js'
import { hasOpenssl, makeCertificates, makePsk } from './tls-fixtures.js'

const SIZE = 1 << 20
let dir: string
let psk: ReturnType<typeof makePsk>
let served: Awaited<ReturnType<typeof startServer>> | undefined

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-nbd-tls-'))
  psk = makePsk(path.join(dir, 'psk'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))
afterEach(async () => { await served?.stop(); served = undefined })

async function serve(tlsOptions: ServeNbdOptions['tls']): Promise<string> {
  served = await startServer({ disk: MemoryDevice.from(pattern(SIZE, 3)) }, tlsOptions)
  return served.socket
}

/** PSK client options for node:tls (identity and key from the fixture unless overridden). */
function pskClient(key = psk.key, identity = psk.user, extra: tls.ConnectionOptions = {}): tls.ConnectionOptions {
  return { pskCallback: () => ({ psk: key, identity }), checkServerIdentity: () => undefined, ...extra }
}

/** Sends STARTTLS, expects the ACK, and runs the client's TLS handshake; resolves with a client over TLS. */
async function startTls(c: RawClient, options: tls.ConnectionOptions): Promise<RawClient> {
  c.sendOption(P.NBD_OPT_STARTTLS)
  expect(await c.optionReply()).toEqual({ option: P.NBD_OPT_STARTTLS, type: P.NBD_REP_ACK, data: Buffer.alloc(0) })
  const secure = tls.connect({ socket: c.socket, ...options })
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve())
    secure.once('error', reject)
  })
  return RawClient.over(secure)
}

/** A TLS handshake that must fail: resolves with the client's error. */
async function failedTls(c: RawClient, options: tls.ConnectionOptions): Promise<Error> {
  return startTls(c, options).then(() => { throw new Error('the TLS handshake succeeded') }, (e: Error) => e)
}

/** GO to `disk` and READ its first 4 KiB; checks the bytes. */
async function goAndRead(c: RawClient): Promise<void> {
  c.sendOption(P.NBD_OPT_GO, goData('disk'))
  const info = await c.optionReply()
  expect(info.type).toBe(P.NBD_REP_INFO)
  expect(Number(info.data.readBigUInt64BE(2))).toBe(SIZE)
  while ((await c.optionReply()).type !== P.NBD_REP_ACK) { /* the block size info */ }
  c.request(P.NBD_CMD_READ, 7, 0, 4096)
  const reply = await c.simpleReply(4096)
  expect(reply).toMatchObject({ error: 0, handle: 7 })
  expect(reply!.data!.equals(Buffer.from(pattern(SIZE, 3).subarray(0, 4096)))).toBe(true)
}

describe('tls require (PSK)', () => {
  test('before TLS every option but STARTTLS and ABORT gets ERR_TLS_REQD, and no export name or size leaks', async () => {
    const c = await RawClient.connect(await serve({ mode: 'require', psk: psk.file }))
    await c.greet()
    const seen: Buffer[] = []
    const options: Array<[number, Buffer]> = [
      [P.NBD_OPT_LIST, Buffer.alloc(0)], [P.NBD_OPT_INFO, goData('disk')], [P.NBD_OPT_GO, goData('disk')], [P.NBD_OPT_GO, goData('nope')],
      [P.NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)], [P.NBD_OPT_LIST_META_CONTEXT, Buffer.alloc(8)], [4242, Buffer.from('x')],
    ]
    for (const [option, data] of options) {
      c.sendOption(option, data)
      const reply = await c.optionReply()
      expect(reply, `option ${option}`).toMatchObject({ option, type: P.NBD_REP_ERR_TLS_REQD })
      seen.push(reply.data)
    }
    const all = Buffer.concat(seen)
    expect(all.includes(Buffer.from('disk'))).toBe(false)
    const size = Buffer.alloc(8)
    size.writeBigUInt64BE(BigInt(SIZE))
    expect(all.includes(size)).toBe(false)
    c.sendOption(P.NBD_OPT_ABORT)
    expect((await c.optionReply()).type).toBe(P.NBD_REP_ACK)
    await c.closed
  })

  test('EXPORT_NAME before TLS is hung up on without a byte', async () => {
    const c = await RawClient.connect(await serve({ mode: 'require', psk: psk.file }))
    await c.greet()
    c.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('disk'))
    expect(await c.read(1)).toBeUndefined()
  })

  test('after STARTTLS (TLS 1.3) haggling starts again inside TLS: GO and READ work; STARTTLS again is ERR_INVALID', async () => {
    const c = await RawClient.connect(await serve({ mode: 'require', psk: psk.file }))
    await c.greet()
    const s = await startTls(c, pskClient())
    expect((s.socket as tls.TLSSocket).getProtocol()).toBe('TLSv1.3')
    s.sendOption(P.NBD_OPT_STARTTLS)
    expect((await s.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
    s.sendOption(P.NBD_OPT_LIST)
    const listed = await s.optionReply()
    expect(listed.type).toBe(P.NBD_REP_SERVER)
    expect(listed.data.subarray(4).toString()).toBe('disk')
    expect((await s.optionReply()).type).toBe(P.NBD_REP_ACK)
    await goAndRead(s)
    s.destroy()
  })

  test('a TLS 1.2 PSK client is served too; close() hangs up on it', async () => {
    const c = await RawClient.connect(await serve({ mode: 'require', psk: new Map([[psk.user, psk.key]]) }))
    await c.greet()
    const s = await startTls(c, pskClient(psk.key, psk.user, { maxVersion: 'TLSv1.2', ciphers: 'PSK-AES256-GCM-SHA384' }))
    expect((s.socket as tls.TLSSocket).getProtocol()).toBe('TLSv1.2')
    await goAndRead(s)
    // close() with this TLS client still connected: the server hangs up and close() resolves.
    await served!.stop()
    served = undefined
    await s.closed
  })

  test('a wrong key, an unknown username, or garbage instead of a ClientHello ends only that connection', async () => {
    const socket = await serve({ mode: 'require', psk: psk.file })
    const wrongKey = await RawClient.connect(socket)
    await wrongKey.greet()
    await expect(failedTls(wrongKey, pskClient(Buffer.alloc(32, 1)))).resolves.toBeInstanceOf(Error)
    const stranger = await RawClient.connect(socket)
    await stranger.greet()
    await expect(failedTls(stranger, pskClient(psk.key, 'mallory'))).resolves.toBeInstanceOf(Error)

    const garbage = await RawClient.connect(socket)
    await garbage.greet()
    garbage.sendOption(P.NBD_OPT_STARTTLS)
    expect((await garbage.optionReply()).type).toBe(P.NBD_REP_ACK)
    garbage.write(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'))
    await garbage.closed

    const good = await RawClient.connect(socket)
    await good.greet()
    await goAndRead(await startTls(good, pskClient()))
    good.destroy()
  })

  test('STARTTLS with data is ERR_INVALID; bytes sent after STARTTLS before its reply end the connection', async () => {
    const socket = await serve({ mode: 'require', psk: psk.file })
    const c = await RawClient.connect(socket)
    await c.greet()
    c.sendOption(P.NBD_OPT_STARTTLS, Buffer.from('x'))
    expect((await c.optionReply()).type).toBe(P.NBD_REP_ERR_INVALID)
    // STARTTLS and an option in one write: the option was sent before the reply came.
    c.write(Buffer.concat([optionBytesOf(P.NBD_OPT_STARTTLS), optionBytesOf(P.NBD_OPT_LIST)]))
    expect((await c.optionReply()).type).toBe(P.NBD_REP_ACK)
    expect(await c.read(1)).toBeUndefined()
  })
})

test('close() does not wait on a client stuck in the TLS handshake', async () => {
  await serve({ mode: 'require', psk: psk.file })
  const c = await RawClient.connect(served!.socket)
  await c.greet()
  c.sendOption(P.NBD_OPT_STARTTLS)
  expect((await c.optionReply()).type).toBe(P.NBD_REP_ACK)
  c.write(Buffer.from([0x16, 0x03, 0x01])) // the start of a ClientHello, then silence
  const started = Date.now()
  await served!.stop()
  served = undefined
  await c.closed
  expect(Date.now() - started).toBeLessThan(3000)
})

function optionBytesOf(option: number): Buffer {
  const out = Buffer.alloc(16)
  out.writeBigUInt64BE(P.NBD_OPTS_MAGIC, 0)
  out.writeUInt32BE(option, 8)
  return out
}

describe('tls on', () => {
  test('plain clients are served; STARTTLS forgets structured replies agreed in plain text', async () => {
    const socket = await serve({ mode: 'on', psk: psk.file })
    const plain = await RawClient.connect(socket)
    await plain.greet()
    await goAndRead(plain)
    plain.destroy()

    const c = await RawClient.connect(socket)
    await c.greet()
    c.sendOption(P.NBD_OPT_STRUCTURED_REPLY)
    expect((await c.optionReply()).type).toBe(P.NBD_REP_ACK)
    const s = await startTls(c, pskClient())
    await goAndRead(s) // a simple reply: structured replies were not agreed inside TLS
    s.destroy()
  })
})

describe.runIf(hasOpenssl)('tls with certificates (openssl makes them)', () => {
  let certs: ReturnType<typeof makeCertificates>
  beforeAll(() => { certs = makeCertificates(path.join(dir, 'certs'), path.join(dir, 'other-ca')) }, 20_000)

  test('a client trusting the CA connects to localhost; one trusting another CA, or another name, refuses', async () => {
    const socket = await serve({ mode: 'require', certificates: certs.dir })
    const ca = readFileSync(path.join(certs.dir, 'ca-cert.pem'))
    const c = await RawClient.connect(socket)
    await c.greet()
    await goAndRead(await startTls(c, { ca, servername: 'localhost' }))
    c.destroy()

    const other = await RawClient.connect(socket)
    await other.greet()
    expect((await failedTls(other, { ca: readFileSync(path.join(certs.otherCa, 'ca-cert.pem')), servername: 'localhost' })).message).toMatch(/self.signed|unable to (get|verify)/i)
    const wrongName = await RawClient.connect(socket)
    await wrongName.greet()
    expect((await failedTls(wrongName, { ca, servername: 'evil.example' })).message).toMatch(/altnames|does not match/i)
  })

  test('PEMs can be given directly; a key that does not match the certificate is refused before listening', async () => {
    const pem = (d: string, f: string) => readFileSync(path.join(d, f))
    const socket = await serve({ mode: 'on', certificates: { key: pem(certs.dir, 'server-key.pem'), cert: pem(certs.dir, 'server-cert.pem') } })
    const c = await RawClient.connect(socket)
    await c.greet()
    await goAndRead(await startTls(c, { ca: pem(certs.dir, 'ca-cert.pem'), servername: 'localhost' }))
    c.destroy()
    const sock = path.join(dir, 'mismatch.sock')
    const mismatch = serveNbd({ exports: { disk: new MemoryDevice(SIZE) }, socket: sock, tls: { mode: 'on', certificates: { key: pem(certs.otherCa, 'ca-key.pem'), cert: pem(certs.dir, 'server-cert.pem') } } })
    await expect(mismatch).rejects.toMatchObject({ code: 'SNAPCOW_TLS_CREDENTIALS', message: expect.stringMatching(/not usable/) })
    expect(existsSync(sock)).toBe(false)
  })
})

describe('tls options', () => {
  test('a PSK file: username:hexkey lines, blank lines and CRLF allowed; a bad line is named by number', () => {
    const keys = parsePskFile('alice:00ff\r\n\nbob:0102030405\n', 'k.psk')
    expect([...keys]).toEqual([['alice', Buffer.from([0, 255])], ['bob', Buffer.from([1, 2, 3, 4, 5])]])
    const bad: Array<[string, RegExp]> = [
      ['alice:00\nbob\n', /k\.psk line 2: expected username:hexkey/],
      ['alice:00\n\nbob:0g\n', /line 3: the key of "bob" is not an even number of hex digits/],
      ['alice:abc\n', /line 1: .*not an even number/],
      ['alice:00\nalice:01\n', /line 2: username "alice" appears twice/],
      [':00\n', /line 1: username "" must be non-empty/],
      ['\n\n', /holds no username:hexkey line/],
    ]
    for (const [text, message] of bad) {
      let error: unknown
      try { parsePskFile(text, 'k.psk') } catch (e) { error = e }
      expect(error, text).toBeInstanceOf(SnapcowError)
      expect((error as SnapcowError).code).toBe('SNAPCOW_TLS_CREDENTIALS')
      expect((error as Error).message, text).toMatch(message)
    }
  })

  test('misuse is a TypeError/RangeError; unreadable credentials are SNAPCOW_TLS_CREDENTIALS; nothing listens', async () => {
    const dev = new MemoryDevice(SIZE)
    const socket = path.join(dir, 'never.sock')
    const serveWith = (t: unknown) => serveNbd({ exports: { disk: dev }, socket, tls: t as ServeNbdOptions['tls'] })
    await expect(serveWith({ mode: 'maybe', psk: psk.file })).rejects.toThrow(/tls.mode must be 'on' or 'require', not "maybe"/)
    await expect(serveWith({ mode: 'on' })).rejects.toThrow(TypeError)
    await expect(serveWith({ mode: 'on', psk: psk.file, certificates: dir })).rejects.toThrow(/exactly one of certificates/)
    await expect(serveWith({ mode: 'on', psk: new Map() })).rejects.toThrow(RangeError)
    await expect(serveWith({ mode: 'on', psk: psk.file, verifyPeer: true })).rejects.toThrow(/verifyPeer goes with certificates/)
    await expect(serveWith({ mode: 'on', certificates: { key: 'k', cert: 'c' }, verifyPeer: true })).rejects.toThrow(/needs certificates.ca/)
    await expect(serveWith({ mode: 'on', psk: new Map([['a:b', Buffer.alloc(4)]]) })).rejects.toThrow(/username "a:b"/)
    await expect(serveWith({ mode: 'on', psk: path.join(dir, 'missing.psk') })).rejects.toMatchObject({ code: 'SNAPCOW_TLS_CREDENTIALS', message: expect.stringMatching(/missing\.psk: no such file/) })
    await expect(serveWith({ mode: 'on', certificates: path.join(dir, 'psk') })).rejects.toMatchObject({ code: 'SNAPCOW_TLS_CREDENTIALS', message: expect.stringMatching(/ca-cert\.pem: no such file/) })
    const badPsk = path.join(dir, 'bad.psk')
    writeFileSync(badPsk, 'alice:00\nbob:zz\n')
    await expect(serveWith({ mode: 'require', psk: badPsk })).rejects.toThrow(/bad\.psk line 2/)
    expect(existsSync(socket)).toBe(false)
  })
})
