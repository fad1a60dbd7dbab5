// Real TLS clients against serveNbd with `tls`: libnbd's (nbdinfo, nbdcopy with nbds+unix URIs
// and tls-psk-file / tls-certificates) and qemu's (qemu-img with tls-creds-psk / tls-creds-x509
// objects). Each test skips, naming the binary, when a client (or openssl) is not installed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import type { ServeNbdOptions } from '../../io/nbd/server.js'
import { pattern, startServer } from './raw-client.js'
import { hasOpenssl, makeCertificates, makePsk } from './tls-fixtures.js'
import { installed, runTool } from '../support/tools.js'

const SIZE = 2 << 20

/** A test that runs only when every binary is installed; its name says which are missing. */
function clientTest(bins: string[], name: string, body: () => Promise<void>): void {
  const absent = bins.filter((b) => (b === 'openssl' ? !hasOpenssl : !installed(b)))
  if (absent.length > 0) test.skip(`${name} (skipped: ${absent.join(', ')} not installed; apt-get install libnbd-bin qemu-utils openssl)`, body)
  else test(name, body, 10_000)
}

const run = (bin: string, args: string[]) => runTool(bin, args, { timeoutMs: 9_000 })

let dir: string
let psk: ReturnType<typeof makePsk>
let certs: ReturnType<typeof makeCertificates> | undefined
let device: MemoryDevice
let served: Awaited<ReturnType<typeof startServer>> | undefined

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-nbd-tls-clients-'))
  psk = makePsk(path.join(dir, 'psk'))
  if (hasOpenssl) certs = makeCertificates(path.join(dir, 'certs'), path.join(dir, 'other-ca'))
}, 20_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))
afterEach(async () => { await served?.stop(); served = undefined })

async function serve(tls: ServeNbdOptions['tls']): Promise<string> {
  device = MemoryDevice.from(pattern(SIZE, 5))
  served = await startServer({ disk: device }, tls)
  return served.socket
}

const pskUri = (socket: string, file = psk.file, user = psk.user) => `nbds+unix://${user}@/disk?socket=${socket}&tls-psk-file=${file}`
const qemuPsk = (pskDir: string, user = psk.user) => ['--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${pskDir},username=${user}`]
const qemuImage = (socket: string) => ['--image-opts', `driver=nbd,path=${socket},export=disk,tls-creds=tls0`]

describe('PSK', () => {
  clientTest(['nbdinfo'], 'nbdinfo over nbds+unix with tls-psk-file sees the export; without TLS, or with a wrong key, it gets nothing', async () => {
    const socket = await serve({ mode: 'require', psk: psk.file })
    const ok = await run('nbdinfo', [pskUri(socket)])
    expect(ok.code, ok.out).toBe(0)
    expect(ok.out).toMatch(/with TLS/)
    expect(ok.out).toMatch(new RegExp(`export-size: ${SIZE}\\b`))

    const plain = await run('nbdinfo', [`nbd+unix:///disk?socket=${socket}`])
    expect(plain.code).not.toBe(0)
    expect(plain.out).not.toContain(String(SIZE))
    const listed = await run('nbdinfo', ['--list', `nbd+unix:///?socket=${socket}`])
    expect(listed.out).not.toMatch(/export="disk"/)

    const wrong = makePsk(path.join(dir, 'wrong'))
    const refused = await run('nbdinfo', [pskUri(socket, wrong.file)])
    expect(refused.code).not.toBe(0)
    expect(refused.out).toMatch(/TLS|handshake/i)
    expect((await run('nbdinfo', ['--size', pskUri(socket)])).out.trim()).toBe(String(SIZE))
  })

  clientTest(['nbdcopy'], 'nbdcopy uploads and downloads through TLS over 4 connections', async () => {
    const socket = await serve({ mode: 'require', psk: psk.file })
    const upload = path.join(dir, 'up.raw')
    const download = path.join(dir, 'down.raw')
    const fresh = pattern(SIZE, 9)
    writeFileSync(upload, fresh)
    const up = await run('nbdcopy', ['--connections=4', '--threads=4', upload, pskUri(socket)])
    expect(up.code, up.out).toBe(0)
    const now = Buffer.alloc(SIZE)
    await device.read(0, now)
    expect(now.equals(Buffer.from(fresh))).toBe(true)
    const down = await run('nbdcopy', ['--connections=4', '--threads=4', pskUri(socket), download])
    expect(down.code, down.out).toBe(0)
    expect(readFileSync(download).equals(Buffer.from(fresh))).toBe(true)
  })

  clientTest(['qemu-img'], 'qemu-img info and convert with a tls-creds-psk object (dir/keys.psk, username)', async () => {
    const socket = await serve({ mode: 'require', psk: psk.file })
    const info = await run('qemu-img', ['info', ...qemuPsk(path.dirname(psk.file)), ...qemuImage(socket)])
    expect(info.code, info.out).toBe(0)
    expect(info.out).toMatch(new RegExp(`virtual size: .*\\(${SIZE} bytes\\)`))
    const out = path.join(dir, 'converted.raw')
    const convert = await run('qemu-img', ['convert', ...qemuPsk(path.dirname(psk.file)), '-O', 'raw', ...qemuImage(socket), out])
    expect(convert.code, convert.out).toBe(0)
    expect(readFileSync(out).equals(Buffer.from(pattern(SIZE, 5)))).toBe(true)

    const plain = await run('qemu-img', ['info', `nbd+unix:///disk?socket=${socket}`])
    expect(plain.code).not.toBe(0)
    expect(plain.out).toMatch(/TLS/)
  })
})

describe('certificates', () => {
  clientTest(['nbdinfo', 'openssl'], 'nbdinfo with tls-certificates reads the export over TLS', async () => {
    const socket = await serve({ mode: 'require', certificates: certs!.dir })
    const ok = await run('nbdinfo', [`nbds+unix:///disk?socket=${socket}&tls-certificates=${certs!.dir}`])
    expect(ok.code, ok.out).toBe(0)
    expect(ok.out).toMatch(/with TLS/)
    expect(ok.out).toMatch(new RegExp(`export-size: ${SIZE}\\b`))
  })

  clientTest(['nbdinfo', 'qemu-img', 'openssl'], 'verifyPeer: clients with a certificate the CA signed get in; one without gets nothing', async () => {
    const socket = await serve({ mode: 'require', certificates: certs!.dir, verifyPeer: true })
    const uri = (d: string) => `nbds+unix:///disk?socket=${socket}&tls-certificates=${d}`
    const ok = await run('nbdinfo', ['--size', uri(certs!.dir)])
    expect(ok.code, ok.out).toBe(0)
    expect(ok.out.trim()).toBe(String(SIZE))
    const anonymous = await run('nbdinfo', ['--size', uri(certs!.caOnly)])
    expect(anonymous.code).not.toBe(0)
    expect(anonymous.out).not.toContain(String(SIZE))
    const image = ['--image-opts', `driver=nbd,path=${socket},export=disk,tls-creds=tls0,tls-hostname=localhost`]
    const qemu = await run('qemu-img', ['info', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${certs!.dir}`, ...image])
    expect(qemu.code, qemu.out).toBe(0)
    const qemuAnonymous = await run('qemu-img', ['info', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${certs!.caOnly}`, ...image])
    expect(qemuAnonymous.code).not.toBe(0)
  })

  clientTest(['qemu-img', 'openssl'], 'qemu-img with tls-creds-x509 checks the CA and the name localhost', async () => {
    const socket = await serve({ mode: 'on', certificates: certs!.dir })
    const x509 = (caDir: string) => ['--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${caDir}`]
    const image = (host: string) => ['--image-opts', `driver=nbd,path=${socket},export=disk,tls-creds=tls0,tls-hostname=${host}`]
    const ok = await run('qemu-img', ['info', ...x509(certs!.dir), ...image('localhost')])
    expect(ok.code, ok.out).toBe(0)
    expect(ok.out).toMatch(new RegExp(`\\(${SIZE} bytes\\)`))
    const otherCa = await run('qemu-img', ['info', ...x509(certs!.otherCa), ...image('localhost')])
    expect(otherCa.code).not.toBe(0)
    expect(otherCa.out).toMatch(/issuer/i)
    const otherName = await run('qemu-img', ['info', ...x509(certs!.dir), ...image('evil.example')])
    expect(otherName.code).not.toBe(0)
    expect(otherName.out).toMatch(/hostname/i)
  })
})
