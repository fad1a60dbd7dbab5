// test/cli/serve.test.ts: `snapcow serve` (the built program) with real clients: fio's NBD engine
// writing with verification, two clients on two exports at once; and the socket rules: a busy
// socket or port is refused and left to its server, a stale socket is replaced, a file is not.
// The client tests skip, naming the binary, when it is not installed (.ci/run installs them).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest'
import { FileDevice, openOrigin } from '../../index.js'
import * as P from '../../io/nbd/protocol.js'
import { pattern, RawClient } from '../nbd/raw-client.js'
import { installed, runTool } from '../support/tools.js'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js')
const SIZE = 8 << 20
let dir: string
const file = (name: string): string => path.join(dir, name)

/** fio counts only with its nbd engine (Debian's has it built in). */
const usable = (bin: string) => installed(bin) && (bin !== 'fio' || spawnSync('fio', ['--enghelp=nbd']).status === 0)
/** A test that runs only when every binary is installed; its name says which are missing. */
function clientTest(bins: string[], name: string, body: () => Promise<void>): void {
  const absent = bins.filter((b) => !usable(b))
  if (absent.length === 0) return void test(name, body, 30_000)
  console.warn(`test/cli/serve.test.ts: skipping "${name}": ${absent.join(', ')} not installed (apt-get install fio libnbd-bin qemu-utils)`)
  test.skip(`${name} (skipped: ${absent.join(', ')} not installed)`, body)
}

function snapcow(...args: string[]): { code: number | null; out: string; err: string } {
  const run = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
  return { code: run.status, out: run.stdout, err: run.stderr }
}

const run = (bin: string, args: string[]) => runTool(bin, args, { cwd: dir, timeoutMs: 20_000 })

const running = new Set<ChildProcess>()
interface Served { address: string; out: () => string; err: () => string; stop(): Promise<{ code: number | null; out: string; err: string }>; kill(): Promise<void> }
/** Starts `snapcow serve …` and resolves once it says where it serves. */
function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd: dir })
  running.add(child)
  let out = ''
  let err = ''
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => { running.delete(child); resolve(code) }))
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const address = /^serving .* on (\S+?)(;| \()/m.exec(out)?.[1]
      if (address !== undefined) {
        resolve({ address, out: () => out, err: () => err, stop: async () => { child.kill('SIGINT'); const code = await closed; return { code, out, err } },
          kill: async () => { child.kill('SIGKILL'); await closed } })
      }
    })
    void closed.then((code) => reject(new Error(`snapcow serve exited (${code}) before serving: ${err}`)))
  })
}

/** A pattern image file of `bytes`, returned too. */
function image(name: string, seed: number, bytes = SIZE): Buffer {
  const content = Buffer.from(pattern(bytes, seed))
  fs.writeFileSync(file(name), content)
  return content
}

/** Makes a snapshot store on each COW file (in this process: no program start to wait for). */
async function createSnapshots(origin: string, cows: string[], bytes: number): Promise<void> {
  const originDevice = await FileDevice.open(file(origin))
  const volume = await openOrigin(originDevice, { journal: false })
  const devices = [originDevice]
  for (const cow of cows) {
    const device = await FileDevice.open(file(cow), { create: true, size: bytes })
    devices.push(device)
    await volume.createSnapshot(device)
  }
  await volume.close()
  for (const device of devices) await device.close()
}

/** What the snapshot on `cow` reads, from the files (read-only, once the server has stopped). */
async function snapshotContent(origin: string, cow: string): Promise<Buffer> {
  const originDevice = await FileDevice.open(file(origin), { readOnly: true })
  const cowDevice = await FileDevice.open(file(cow), { readOnly: true })
  const volume = await openOrigin(originDevice, { journal: false })
  const out = Buffer.alloc(originDevice.size)
  await (await volume.loadSnapshot(cowDevice)).read(0, out)
  await volume.close()
  await cowDevice.close()
  await originDevice.close()
  return out
}

/** Connects to a unix socket, GOes to `origin` and reads its first 4 KiB. */
async function readOrigin(socket: string): Promise<Buffer | undefined> {
  const c = await RawClient.connect(socket)
  await c.open('origin')
  c.request(P.NBD_CMD_READ, 1, 0, 4096)
  const reply = await c.simpleReply(4096)
  c.destroy()
  return reply?.data
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapcow-serve-'))
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run tsup (npm test does) first`)
})
afterEach(() => { for (const child of running) child.kill('SIGKILL') })
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

clientTest(['fio'], 'fio random writes with crc32c verification on a snapshot export and the origin export; the other snapshot keeps the old content', async () => {
  const before = image('fio.img', 1)
  await createSnapshots('fio.img', ['a.cow', 'b.cow'], 8 << 20)
  const socket = file('fio.sock')
  const server = await serve(['fio.img', 'a.cow', 'b.cow', '--socket', socket])
  // Both at once: 2 MiB of 4 KiB random writes each, then fio reads every block back and checks its crc32c.
  const fio = (name: string, offset: number) => run('fio', [`--name=${name}`, '--ioengine=nbd', `--uri=nbd+unix:///${name}?socket=${socket}`,
    '--rw=randwrite', '--bs=4k', `--offset=${offset}`, '--size=2M', '--iodepth=8', '--verify=crc32c', '--do_verify=1',
    '--verify_fatal=1', '--output-format=json'])
  const results = await Promise.all([fio('a', 0), fio('origin', 1 << 20)])
  for (const [i, result] of results.entries()) {
    expect(result.code, result.out.slice(-2000)).toBe(0)
    const job = (JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: Array<{ error: number; write: { io_bytes: number }; read: { io_bytes: number } }> }).jobs[0]!
    expect([job.error, job.write.io_bytes, job.read.io_bytes], ['a', 'origin'][i]).toEqual([0, 2 << 20, 2 << 20])
  }
  expect(await server.stop()).toMatchObject({ code: 0 })

  // On disk, after the server stopped: b reads exactly the old content, a the old content where fio did not write.
  expect((await snapshotContent('fio.img', 'b.cow')).equals(before), 'the snapshot nobody wrote reads what the origin held').toBe(true)
  const a = await snapshotContent('fio.img', 'a.cow')
  expect(a.subarray(2 << 20).equals(before.subarray(2 << 20))).toBe(true)
  expect(a.subarray(0, 2 << 20).equals(before.subarray(0, 2 << 20))).toBe(false)
  const origin = fs.readFileSync(file('fio.img'))
  expect(origin.subarray(0, 1 << 20).equals(before.subarray(0, 1 << 20))).toBe(true)
  expect(origin.subarray(1 << 20, 3 << 20).equals(before.subarray(1 << 20, 3 << 20))).toBe(false)
  expect(origin.subarray(3 << 20).equals(before.subarray(3 << 20))).toBe(true)
  expect(snapcow('check', '--origin', 'fio.img', 'a.cow').code).toBe(0)
})

clientTest(['qemu-io', 'nbdcopy'], 'two clients on two exports at once: qemu-io writes the origin while nbdcopy reads the snapshot', async () => {
  const before = image('two.img', 2)
  await createSnapshots('two.img', ['two.cow'], 12 << 20)
  const socket = file('two.sock')
  const server = await serve(['two.img', 'two.cow', '--socket', socket])
  const piece = 256 << 10
  const writes = Array.from({ length: SIZE / piece }, (_, i) => ['-c', `write -P 0x5a ${i * piece} ${piece}`]).flat()
  const copies = async () => {
    const outs: Buffer[] = []
    for (let i = 0; i < 2; i++) {
      const r = await run('nbdcopy', [`nbd+unix:///two?socket=${socket}`, file(`two-${i}.out`)])
      expect(r.code, r.out).toBe(0)
      outs.push(fs.readFileSync(file(`two-${i}.out`)))
    }
    return outs
  }
  const [written, copied] = await Promise.all([run('qemu-io', ['-f', 'raw', ...writes, '-c', `read -P 0x5a 0 ${SIZE}`, `nbd+unix:///origin?socket=${socket}`]), copies()])
  expect(written.code, written.out.slice(-2000)).toBe(0)
  expect(written.out.match(/wrote 262144\/262144 bytes/g)).toHaveLength(SIZE / piece)
  expect(written.out).not.toMatch(/Pattern verification failed/)
  for (const [i, copy] of copied.entries()) expect(copy.equals(before), `copy ${i} of the snapshot reads the old content`).toBe(true)
  expect(await server.stop()).toMatchObject({ code: 0 })
  expect(fs.readFileSync(file('two.img')).every((b) => b === 0x5a)).toBe(true)
  expect((await snapshotContent('two.img', 'two.cow')).equals(before)).toBe(true)
})

test('a second serve on a busy socket or port fails with one line naming it, writes nothing, and the first server carries on', async () => {
  const first = image('busy.img', 3, 1 << 20)
  const other = image('other.img', 4, 1 << 20)
  const socket = file('busy.sock')
  const server = await serve(['busy.img', '--socket', socket])
  const files = fs.readdirSync(dir).sort()
  const again = snapcow('serve', 'other.img', '--socket', socket)
  expect([again.code, again.err]).toEqual([1, `snapcow: ${socket}: a server already listens on this socket: stop it first, or choose another --socket\n`])
  expect(fs.lstatSync(socket).isSocket(), 'the first server\'s socket is still there').toBe(true)
  expect(await readOrigin(socket)).toEqual(first.subarray(0, 4096))

  const tcp = await serve(['busy.img', '--port', '0', '--read-only'])
  const port = Number(tcp.address.split(':')[1])
  const taken = snapcow('serve', 'other.img', '--port', String(port))
  expect([taken.code, taken.err]).toEqual([1, `snapcow: 127.0.0.1:${port}: address in use: another server listens there\n`])
  const greeting = await new Promise<Buffer>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('data', (d: Buffer) => { s.destroy(); resolve(d) })
    s.once('error', reject)
  })
  expect(greeting.readBigUInt64BE(0)).toBe(P.NBD_MAGIC)

  expect(fs.readFileSync(file('other.img')).equals(other), 'the refused server wrote nothing').toBe(true)
  expect(fs.readdirSync(dir).sort(), 'and left no file behind').toEqual(files)
  expect(await tcp.stop()).toMatchObject({ code: 0 })
  expect(await readOrigin(socket)).toEqual(first.subarray(0, 4096))
  expect(await server.stop()).toMatchObject({ code: 0 })
  expect(fs.existsSync(socket)).toBe(false)
})

test('a stale socket (its server died) is replaced; a file that is not a socket is refused and kept', async () => {
  const first = image('stale.img', 5, 1 << 20)
  const socket = file('stale.sock')
  // A server killed before it could clean up leaves its socket file behind.
  const killed = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`])
  expect(killed.signal).toBe('SIGKILL')
  expect(fs.lstatSync(socket).isSocket()).toBe(true)
  const server = await serve(['stale.img', '--socket', socket])
  expect(server.out()).toContain(`removed the stale socket ${socket} (no server listened on it)`)
  expect(await readOrigin(socket)).toEqual(first.subarray(0, 4096))
  expect(await server.stop()).toMatchObject({ code: 0 })

  const notSocket = file('notes.txt')
  fs.writeFileSync(notSocket, 'keep me')
  const refused = snapcow('serve', 'stale.img', '--socket', notSocket)
  expect([refused.code, refused.err]).toEqual([1, `snapcow: ${notSocket}: exists and is not a socket: choose another --socket (only a stale socket is replaced)\n`])
  expect(fs.readFileSync(notSocket, 'utf8')).toBe('keep me')
})

test('--max-buffered takes a size of at least one largest request; a bad one is a usage error (exit 2) before anything opens', async () => {
  image('budget.img', 6, 1 << 20)
  const socket = file('budget.sock')
  const small = snapcow('serve', 'budget.img', '--socket', socket, '--max-buffered', '1M')
  expect([small.code, small.err]).toEqual([2, 'snapcow: --max-buffered 1M is less than one largest request (32 MiB)\n'])
  const garbage = snapcow('serve', 'budget.img', '--socket', socket, '--max-buffered', 'lots')
  expect(garbage.code).toBe(2)
  expect(garbage.err).toMatch(/--max-buffered "lots" is not a size/)
  expect(fs.existsSync(socket), 'no socket was made').toBe(false)
  const server = await serve(['budget.img', '--socket', socket, '--max-buffered', '64M'])
  expect(await readOrigin(socket)).toEqual(fs.readFileSync(file('budget.img')).subarray(0, 4096))
  expect(await server.stop()).toMatchObject({ code: 0 })
})

test('a server killed with SIGKILL restarts at once: it waits out the dead one\'s locks and serves what was written', async () => {
  const before = image('killed.img', 8, 1 << 20)
  await createSnapshots('killed.img', ['killed.cow'], 1 << 20)
  const socket = file('killed.sock')
  const first = await serve(['killed.img', 'killed.cow', '--socket', socket])
  const c = await RawClient.connect(socket)
  await c.open('origin')
  const written = Buffer.from(pattern(4096, 9))
  c.request(P.NBD_CMD_WRITE, 1, 0, 4096, P.NBD_CMD_FLAG_FUA, written)
  expect((await c.simpleReply())?.error).toBe(0)
  c.destroy()
  await first.kill() // no exit handler: the lock directories and the socket stay behind
  expect(fs.existsSync(file('killed.img.lock'))).toBe(true)
  const started = Date.now()
  const second = await serve(['killed.img', 'killed.cow', '--socket', socket])
  expect(Date.now() - started, 'restart took about as long as the lock takes to go stale (10 s), not forever').toBeLessThan(30_000)
  expect(second.err(), 'it said what it waited for').toMatch(/killed\.img: waiting for its lock/)
  expect(await readOrigin(socket)).toEqual(written)
  const snap = await RawClient.connect(socket)
  await snap.open('killed')
  snap.request(P.NBD_CMD_READ, 2, 0, 4096)
  expect((await snap.simpleReply(4096))?.data).toEqual(before.subarray(0, 4096))
  snap.destroy()
  expect(await second.stop()).toMatchObject({ code: 0 })
}, 60_000)
