// Real NBD clients from Debian (libnbd-bin: nbdinfo, nbdcopy; qemu-utils: qemu-io, qemu-img)
// against the server, serving a MemoryDevice and a snapcow origin with a snapshot. Each test
// skips, saying which binary is missing, when a client is not installed (.ci/run installs them).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { openOrigin } from '../../actors/origin-volume.js'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { pattern, startServer } from './raw-client.js'
import { installed, runTool } from '../support/tools.js'

const SIZE = 4 << 20
const missing = (...bins: string[]) => bins.filter((b) => !installed(b))
const absentClients = missing('nbdinfo', 'nbdcopy', 'qemu-io', 'qemu-img')
if (absentClients.length > 0) {
  console.warn(`test/nbd/clients.test.ts: skipping the tests that need ${absentClients.join(', ')} (not installed; apt-get install libnbd-bin qemu-utils)`)
}

/** A test that runs only when every binary is installed; its name says which are missing. */
function clientTest(bins: string[], name: string, body: () => Promise<void>): void {
  const absent = missing(...bins)
  if (absent.length > 0) test.skip(`${name} (skipped: ${absent.join(', ')} not installed; apt-get install libnbd-bin qemu-utils)`, body)
  else test(name, body, 30_000)
}

const run = (bin: string, args: string[]) => runTool(bin, args, { timeoutMs: 20_000 })

interface Setup {
  exports: Record<string, BlockDevice | { device: BlockDevice; readOnly?: boolean }>
  origin: BlockDevice
  snapshot?: BlockDevice
}
const setups: Array<[string, () => Promise<Setup>]> = [
  ['MemoryDevice', async () => {
    const origin = MemoryDevice.from(pattern(SIZE, 1))
    return { exports: { origin }, origin }
  }],
  ['snapcow origin + snapshot', async () => {
    const origin = await openOrigin(MemoryDevice.from(pattern(SIZE, 1)))
    const snapshot = await origin.createSnapshot(new MemoryDevice(SIZE + (1 << 20)), { chunkSize: 4096 })
    return { exports: { origin, snap: { device: snapshot, readOnly: true } }, origin, snapshot }
  }],
]

describe.each(setups)('real clients against %s', (_label, make) => {
  let setup: Setup
  let served: Awaited<ReturnType<typeof startServer>>
  let dir: string
  const uri = (name: string) => `nbd+unix:///${name}?socket=${served.socket}`
  const bytesOf = async (device: BlockDevice) => {
    const out = Buffer.alloc(device.size)
    await device.read(0, out)
    return out
  }
  beforeEach(async () => {
    setup = await make()
    served = await startServer(setup.exports)
    dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-nbd-clients-'))
  })
  afterEach(async () => {
    await served.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  clientTest(['nbdinfo'], 'nbdinfo sees the size, the flags and the 512-byte minimum block', async () => {
    const { code, out } = await run('nbdinfo', [uri('origin')])
    expect(code, out).toBe(0)
    expect(out).toMatch(new RegExp(`export-size: ${SIZE}\\b`))
    expect(out).toMatch(/block_size_minimum: 512/)
    expect(out).toMatch(/can_multi_conn: true/)
    expect(out).toMatch(/is_read_only: false/)
    if (setup.snapshot) expect((await run('nbdinfo', [uri('snap')])).out).toMatch(/is_read_only: true/)
  })

  clientTest(['qemu-io'], 'qemu-io writes a pattern and reads it back; the device holds it', async () => {
    const { code, out } = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 64k', '-c', 'read -P 0xab 0 64k', uri('origin')])
    expect(code, out).toBe(0)
    expect(out).toMatch(/wrote 65536\/65536 bytes at offset 0/)
    expect(out).toMatch(/read 65536\/65536 bytes at offset 0/)
    expect(out).not.toMatch(/Pattern verification failed/)
    const now = await bytesOf(setup.origin)
    expect(now.subarray(0, 65536).equals(Buffer.alloc(65536, 0xab))).toBe(true)
    expect(now.subarray(65536).equals(Buffer.from(pattern(SIZE, 1).subarray(65536)))).toBe(true)
    if (setup.snapshot) {
      // The snapshot export still reads the data from before the write.
      const r = await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read -P 0xab 0 64k', uri('snap')])
      expect(r.out).toMatch(/Pattern verification failed/)
      expect((await bytesOf(setup.snapshot)).equals(Buffer.from(pattern(SIZE, 1)))).toBe(true)
    }
  })

  clientTest(['qemu-img'], 'qemu-img compare finds the export equal to its image, and different after a change', async () => {
    const file = path.join(dir, 'expected.raw')
    writeFileSync(file, pattern(SIZE, 1))
    const same = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, uri('origin')])
    expect(same.code, same.out).toBe(0)
    await setup.origin.write(1 << 20, new Uint8Array(4096).fill(7))
    const differ = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, uri('origin')])
    expect(differ.code, differ.out).toBe(1)
    if (setup.snapshot) {
      const snap = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, uri('snap')])
      expect(snap.code, snap.out).toBe(0)
    }
  })

  /** nbdcopy over 4 connections (it caps them at --threads, the core count by default); checks it used 4. */
  const nbdcopy = async (from: string, to: string) => {
    const r = await run('nbdcopy', ['--connections=4', '--threads=4', '--requests=16', '--verbose', from, to])
    expect(r.code, r.out.slice(-2000)).toBe(0)
    expect(r.out).toMatch(/connections=4 /)
    expect(new Set(r.out.match(/(src|dst)\d+: nbd_connect_uri: enter/g)).size).toBe(4)
  }

  clientTest(['nbdcopy'], 'nbdcopy with 4 connections uploads an image and downloads it again', async () => {
    const upload = path.join(dir, 'up.raw')
    const download = path.join(dir, 'down.raw')
    const fresh = pattern(SIZE, 2)
    fresh.fill(0, SIZE / 2, SIZE / 2 + (256 << 10)) // a zero run: nbdcopy may send WRITE_ZEROES
    writeFileSync(upload, fresh)
    await nbdcopy(upload, uri('origin'))
    expect((await bytesOf(setup.origin)).equals(Buffer.from(fresh))).toBe(true)
    await nbdcopy(uri('origin'), download)
    expect(readFileSync(download).equals(Buffer.from(fresh))).toBe(true)
    if (setup.snapshot) {
      await nbdcopy(uri('snap'), download)
      expect(readFileSync(download).equals(Buffer.from(pattern(SIZE, 1))), 'the snapshot export reads the data from before the upload').toBe(true)
    }
  })
})
