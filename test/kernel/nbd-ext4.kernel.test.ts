// The Linux kernel as a client of `snapcow serve`: an ext4 image made on the host is the origin,
// the kernel (through qemu's NBD client, ../shared/oracle fs-check) mounts the snapshot export,
// writes files through the origin export, and mounts both again. The snapshot must show the
// filesystem exactly as it was, the origin the new files, and e2fsck must pass on both.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { FileDevice, readCowStore } from '../../index.js'
import { gen, sha256 } from '../support/kernel-vectors.js'
import { kernelFsCheck, oracleAvailable, sha256File } from './oracle.js'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js')
const ORIGIN_BYTES = 64 << 20
const COW_SIZE = '32M'

/** e2fsprogs makes the filesystem and checks it on the host (.ci/run installs it if missing). */
const E2FS_TOOLS = ['mkfs.ext4', 'debugfs', 'e2fsck']
const missingTools = E2FS_TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
const oracle = oracleAvailable()
const skipWhy = !oracle.ok ? oracle.why : missingTools.length > 0 ? `${missingTools.join(', ')} not found (apt-get install e2fsprogs)` : undefined
if (skipWhy !== undefined) console.warn(`test/kernel/nbd-ext4.kernel.test.ts: skipped: ${skipWhy}`)

/** The files put into the origin before the snapshot: sizes that end mid-block, an empty one, subfolders. */
const ORIGINAL_FILES: Record<string, Buffer> = {
  'hello.txt': Buffer.from('hello from the host, before the snapshot\n'),
  'empty': Buffer.alloc(0),
  'data/odd-12345.bin': gen('nbd-ext4-odd', 12345),
  'data/random-300k.bin': gen('nbd-ext4-300k', 300 << 10),
  'data/random-2m.bin': gen('nbd-ext4-2m', 2 << 20),
  'notes/readme.txt': Buffer.from('this file is overwritten through the origin export\n'),
}
/** What the guest writes through the origin: a new file, and an existing one overwritten (fs-check adds FILE.bin). */
const NEW_TEXT = 'written-through-the-origin-export'
const CHANGED_TEXT = 'changed-after-the-snapshot'

let dir = ''
const file = (name: string): string => path.join(dir, name)

function snapcow(...args: string[]): { code: number | null; out: string; err: string } {
  const run = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 })
  return { code: run.status, out: run.stdout, err: run.stderr }
}

function host(command: string, args: string[]): { code: number | null; out: string } {
  const run = spawnSync(command, args, { cwd: dir, encoding: 'utf8', timeout: 120_000 })
  return { code: run.status, out: `${run.stdout}${run.stderr}` }
}

/** Starts `snapcow serve`, resolving once it says it is serving; rejects with its output if it exits first. */
function startServer(args: string[]): Promise<{ child: ChildProcess; exited: Promise<{ code: number | null; out: string }> }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd: dir })
  let out = ''
  const exited = new Promise<{ code: number | null; out: string }>((resolve) => child.on('close', (code) => resolve({ code, out })))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`snapcow serve did not start within 30 s:\n${out}`)), 30_000)
    child.stdout!.on('data', (data: Buffer) => {
      out += data.toString()
      if (out.includes('serving ')) { clearTimeout(timer); resolve({ child, exited }) }
    })
    child.stderr!.on('data', (data: Buffer) => { out += data.toString() })
    void exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`snapcow serve exited (${code}) before serving:\n${out}`)) })
  })
}

/** Path → SHA-256, sorted, for readable diffs. */
const sorted = (files: Map<string, string> | Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(files instanceof Map ? Object.fromEntries(files) : files).sort(([a], [b]) => a.localeCompare(b)))

beforeAll(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'snapcow-nbd-ext4-')) })
afterAll(async () => { if (dir !== '') await rm(dir, { recursive: true, force: true }) })

describe.skipIf(skipWhy !== undefined)('Linux mounts ext4 on snapcow serve\'s exports (NBD)', () => {
  test('the snapshot export keeps the filesystem as it was while the kernel writes the origin export; e2fsck is clean on both', async () => {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` (npm test does) first`)

    // The origin: a fresh ext4 filesystem with the files above, written by debugfs on the host.
    const originPath = file('origin.img')
    await writeFile(originPath, '')
    await truncate(originPath, ORIGIN_BYTES)
    expect(host('mkfs.ext4', ['-q', '-F', originPath]).code).toBe(0)
    const commands = ['mkdir data', 'mkdir notes']
    for (const [name, bytes] of Object.entries(ORIGINAL_FILES)) {
      const source = file(`src-${name.replaceAll('/', '-')}`)
      await writeFile(source, bytes)
      commands.push(`write ${source} ${name}`)
    }
    await writeFile(file('debugfs.cmd'), `${commands.join('\n')}\n`)
    const made = host('debugfs', ['-w', '-f', file('debugfs.cmd'), originPath])
    expect(made.code, made.out).toBe(0)
    expect(host('e2fsck', ['-fn', originPath]).code, 'the host-made filesystem is clean').toBe(0)
    const originals = sorted(Object.fromEntries(Object.entries(ORIGINAL_FILES).map(([name, bytes]) => [name, sha256(bytes)])))
    const before = await readFile(originPath)

    // The snapshot, then the server: exports `origin` and `snap`.
    const created = snapcow('create', 'origin.img', 'snap.cow', '--size', COW_SIZE)
    expect(created.code, created.err).toBe(0)
    const socket = file('nbd.sock')
    const server = await startServer(['origin.img', 'snap.cow', '--socket', socket])
    let stopped: { code: number | null; out: string }
    try {
      const run = await kernelFsCheck({
        disks: [
          { uri: `nbd+unix:///origin?socket=${socket}`, readOnly: false }, // vda
          { uri: `nbd+unix:///snap?socket=${socket}`, readOnly: true }, // vdb
        ],
        steps: ['ro:vdb', `rw:vda:new.txt:${NEW_TEXT}`, `rw:vda:notes/readme.txt:${CHANGED_TEXT}`, 'ro:vdb', 'ro:vda'],
      })
      expect(run.wrote).toEqual(['vda new.txt', 'vda notes/readme.txt'])
      expect(run.listings.map((l) => l.dev)).toEqual(['vdb', 'vdb', 'vda'])
      const [snapFirst, snapAfter, originAfter] = run.listings.map((l) => sorted(l.files))
      expect(snapFirst, 'the snapshot before the origin is written').toEqual(originals)
      expect(snapAfter, 'the snapshot after the origin is written').toEqual(originals)
      const anyHash = expect.stringMatching(/^[0-9a-f]{64}$/)
      expect(originAfter, 'the origin after its writes').toEqual(sorted({
        ...originals,
        'new.txt': sha256(Buffer.from(`${NEW_TEXT}\n`)),
        'new.txt.bin': anyHash,
        'notes/readme.txt': sha256(Buffer.from(`${CHANGED_TEXT}\n`)),
        'notes/readme.txt.bin': anyHash,
      }))
    } finally {
      server.child.kill('SIGINT')
      stopped = await server.exited
    }
    expect(stopped.code, stopped.out).toBe(0)
    expect(stopped.out).toMatch(/stopped: requests in flight finished, every write flushed/)

    // The COW really holds the old data: every 4 KiB chunk the kernel changed in the origin
    // is remapped in the snapshot's table (a server that bypassed the COW would fail here).
    const info = snapcow('info', '--json', 'snap.cow')
    expect(info.code, info.err).toBe(0)
    const report = JSON.parse(info.out) as { valid: boolean; exceptions: number; chunkBytes: number }
    expect(report.valid).toBe(true)
    expect(report.exceptions).toBeGreaterThan(0)
    const after = await readFile(originPath)
    const changed: number[] = []
    for (let chunk = 0; chunk * report.chunkBytes < ORIGIN_BYTES; chunk++) {
      const at = chunk * report.chunkBytes
      if (!before.subarray(at, at + report.chunkBytes).equals(after.subarray(at, at + report.chunkBytes))) changed.push(chunk)
    }
    expect(changed.length, 'the kernel\'s writes reached the origin image').toBeGreaterThan(0)
    const cow = await FileDevice.open(file('snap.cow'), { readOnly: true })
    const remapped = new Set((await readCowStore(cow).finally(() => cow.close())).exceptions.map(([oldChunk]) => oldChunk))
    expect(remapped.size).toBe(report.exceptions)
    expect(changed.filter((chunk) => !remapped.has(chunk)), 'origin chunks changed but not copied to the COW').toEqual([])

    // The snapshot's content is the origin image as it was, byte for byte; e2fsck passes on both.
    const exported = snapcow('export', 'origin.img', 'snap.cow', 'snap.img')
    expect(exported.code, exported.err).toBe(0)
    expect(await sha256File(file('snap.img'))).toBe(sha256(before))
    const originCheck = host('e2fsck', ['-fn', originPath])
    expect(originCheck.code, originCheck.out).toBe(0)
    const snapCheck = host('e2fsck', ['-fn', file('snap.img')])
    expect(snapCheck.code, snapCheck.out).toBe(0)
  })
})
