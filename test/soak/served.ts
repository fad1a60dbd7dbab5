// test/soak/served.ts: `snapcow serve` (the built dist/cli.js) as a child process over an origin
// image and persistent snapshots made by `snapcow create`, so the soak tests can read the
// server's RSS, peak RSS and open descriptors from /proc and stop it as a user would (SIGTERM).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js')
/** Images go on tmpfs when there is one: fdatasync on a real disk would measure the disk, not the server. */
const IMAGE_DIR = process.env.SNAPCOW_SOAK_DIR ?? (existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir())

/** The byte at `offset` of the origin image as created (so any reader can check it). */
export const initialByte = (offset: number): number => (offset * 7 + (offset >> 12) * 13) & 0xff

export function initialBytes(offset: number, length: number): Buffer {
  const out = Buffer.alloc(length)
  for (let i = 0; i < length; i++) out[i] = initialByte(offset + i)
  return out
}

export interface Served {
  readonly socket: string
  readonly pid: number
  /** Export names: `origin`, then one per snapshot. */
  readonly exports: readonly string[]
  /** Resident set now, in bytes (VmRSS). */
  rss(): number
  /** Peak resident set since start, in bytes (VmHWM). */
  peakRss(): number
  /** Open file descriptors of the server process. */
  fds(): number
  /** CPU time the server has used (user + system), in seconds. */
  cpuSeconds(): number
  /** SIGTERM, then waits for exit; resolves with the exit code and everything it printed. */
  stop(): Promise<{ code: number | null; out: string }>
}

function statusKb(pid: number, field: string): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))
  if (m === null) throw new Error(`/proc/${pid}/status has no ${field}`)
  return Number(m[1]) * 1024
}

/** Makes an origin of `size` bytes and `snapshots` COW files in a temp dir, and serves them. */
export async function serveImages(size: number, snapshots: number, cowSize = size): Promise<Served> {
  const dir = mkdtempSync(path.join(IMAGE_DIR, 'snapcow-soak-'))
  const origin = path.join(dir, 'origin.img')
  writeFileSync(origin, initialBytes(0, size))
  const cows: string[] = []
  for (let i = 1; i <= snapshots; i++) {
    const cow = path.join(dir, `snap${i}.cow`)
    const made = spawnSync(process.execPath, [BIN, 'create', origin, cow, '--size', String(cowSize)], { encoding: 'utf8' })
    if (made.status !== 0) throw new Error(`snapcow create failed: ${made.stdout}${made.stderr}`)
    cows.push(cow)
  }
  const socket = path.join(dir, 'nbd.sock')
  const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', origin, ...cows, '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr!.on('data', (b: Buffer) => { out += b.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (out.includes('serving')) { child.stdout!.off('data', check); resolve() }
    }
    child.stdout!.on('data', check)
    void exited.then((code) => reject(new Error(`snapcow serve exited ${code} before serving: ${out}`)))
  })
  const pid = child.pid!
  return {
    socket,
    pid,
    exports: ['origin', ...cows.map((_, i) => `snap${i + 1}`)],
    rss: () => statusKb(pid, 'VmRSS'),
    peakRss: () => statusKb(pid, 'VmHWM'),
    fds: () => readdirSync(`/proc/${pid}/fd`).length,
    cpuSeconds: () => {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')
      return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (USER_HZ 100)
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM')
      const code = await exited
      rmSync(dir, { recursive: true, force: true })
      return { code, out }
    },
  }
}

/** Polls `value` until `ok` holds or `ms` pass; returns the last value seen. */
export async function settleTo<T>(value: () => T, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const until = Date.now() + ms
  let v = value()
  while (!ok(v) && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    v = value()
  }
  return v
}

export const MiB = 1024 * 1024
