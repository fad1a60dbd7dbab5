// bench/nbd/servers.ts: the NBD servers compared, each started as a child process on files in
// the run's tmpfs folder (a fresh overlay per start), waited for until it greets, then stopped
// and waited for; and the server's peak RSS (VmHWM) read from /proc.
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Tool } from './tools.js'

const run = promisify(execFile)

export type SystemName = 'snapcow' | 'snapcow-origin' | 'nbdkit-file' | 'nbdkit-cow-4k' | 'qemu-qcow2-4k' | 'qemu-qcow2-64k'

export interface System {
  name: SystemName
  /** What it is, for the table's legend. */
  what: string
  needs: readonly Tool[]
  /** The NBD export the workloads drive (snapcow names a snapshot's after its COW file, `overlay`). */
  exportName: string
}

export const SYSTEMS: readonly System[] = [
  { name: 'snapcow', what: 'snapcow serve, FileDevice origin + persistent 4 KiB-chunk COW; the snapshot export', needs: [], exportName: 'overlay' },
  { name: 'snapcow-origin', what: 'the same server, the origin export (a first write copies the old chunk to the COW)', needs: [], exportName: 'origin' },
  { name: 'nbdkit-file', what: 'nbdkit file on the base: the raw export, the floor', needs: ['nbdkit'], exportName: '' },
  { name: 'nbdkit-cow-4k', what: 'nbdkit --filter=cow file, cow-block-size=4096', needs: ['nbdkit'], exportName: '' },
  { name: 'qemu-qcow2-4k', what: 'qemu-nbd, qcow2 overlay (cluster 4 KiB) backed by the base', needs: ['qemu-nbd', 'qemu-img'], exportName: '' },
  { name: 'qemu-qcow2-64k', what: 'qemu-nbd, qcow2 overlay (cluster 64 KiB) backed by the base', needs: ['qemu-nbd', 'qemu-img'], exportName: '' },
]

export interface Files {
  dir: string
  /** The base image (origin), fully written. */
  base: string
  bytes: number
  /** The snapcow program (dist/cli.js). */
  cli: string
}

export interface Server {
  system: System
  pid: number
  uri: string
  /** Peak resident set so far, KiB (/proc/PID/status VmHWM). */
  hwmKiB(): number
  alive(): boolean
  /** SIGTERM, wait for the exit, remove the socket and overlay. */
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()
process.on('exit', () => { for (const child of live) child.kill('SIGKILL') })

/** Starts `system` on a fresh overlay; `pin` runs it under `taskset -c 0`. */
export async function startServer(system: System, files: Files, pin: boolean): Promise<Server> {
  const sock = path.join(files.dir, 'nbd.sock')
  const overlay = path.join(files.dir, 'overlay')
  await rm(sock, { force: true })
  await rm(overlay, { force: true })
  let argv: string[]
  const env = { ...process.env }
  switch (system.name) {
    case 'snapcow':
    case 'snapcow-origin': {
      // chunk data + one 4 KiB metadata area per 256 exceptions + header, with room to spare
      const cowBytes = Math.ceil((files.bytes * 1.01 + (64 << 10)) / 4096) * 4096
      await run(process.execPath, [files.cli, 'create', files.base, overlay, '--size', String(cowBytes), '--chunk-size', '4k'])
      argv = [process.execPath, files.cli, 'serve', files.base, overlay, '--socket', sock]
      break
    }
    case 'nbdkit-file':
      argv = ['nbdkit', '--exit-with-parent', '-f', '-U', sock, 'file', files.base]
      break
    case 'nbdkit-cow-4k':
      env.TMPDIR = files.dir // its overlay is an unlinked temporary file: keep it on tmpfs
      argv = ['nbdkit', '--exit-with-parent', '-f', '-U', sock, '--filter=cow', 'file', files.base, 'cow-block-size=4096']
      break
    case 'qemu-qcow2-4k':
    case 'qemu-qcow2-64k': {
      const cluster = system.name === 'qemu-qcow2-4k' ? 4096 : 65536
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', files.base, '-o', `cluster_size=${cluster}`, overlay])
      argv = ['qemu-nbd', '-f', 'qcow2', '--cache=writeback', '--aio=threads', '-t', '-e', '4', '-k', sock, overlay]
      break
    }
  }
  if (pin) argv = ['taskset', '-c', '0', ...argv]
  const log = path.join(files.dir, `${system.name}.log`)
  const fd = openSync(log, 'a')
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  live.add(child)
  let exited = false
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; live.delete(child); resolve() }))
  const tail = (): string => readFileSync(log, 'utf8').trim().split('\n').slice(-5).join(' / ')
  const deadline = Date.now() + 20_000
  while (!(await greets(sock))) {
    if (exited) throw new Error(`${system.name} exited before it listened: ${tail()}`)
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`${system.name} did not listen on ${sock} within 20 s: ${tail()}`) }
    await new Promise((r) => setTimeout(r, 50))
  }
  const pid = child.pid!
  return {
    system, pid,
    uri: `nbd+unix:///${system.exportName}?socket=${sock}`,
    hwmKiB: () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]),
    alive: () => !exited,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
        await exit
        clearTimeout(timer)
      }
      await rm(sock, { force: true })
      await rm(overlay, { force: true })
    },
  }
}

/** True once something on `sock` sends the NBD greeting ("NBDMAGIC"). */
function greets(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(sock)
    let got = ''
    const done = (ok: boolean): void => { s.destroy(); resolve(ok) }
    s.setTimeout(2000, () => done(false))
    s.on('error', () => done(false))
    s.on('data', (d) => { got += d.toString('latin1'); if (got.length >= 8) done(got.startsWith('NBDMAGIC')) })
    s.on('close', () => done(false))
  })
}
