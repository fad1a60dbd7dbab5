// test/kernel/oracle.ts: hands images to the real Linux dm-snapshot through the oracle in
// ../shared/oracle (run-vm.sh boots Debian's kernel in a throw-away qemu VM, as root) and
// reads back what the kernel reports. Used by test/kernel/*.kernel.test.ts only.
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { SHARED_DIR } from '../support/kernel-vectors.js'

/** The oracle's folder (run-vm.sh, scenarios/). */
export const ORACLE_DIR = path.join(SHARED_DIR, 'oracle')
export const RUN_VM = path.join(ORACLE_DIR, 'run-vm.sh')
/** Where run-vm.sh keeps the kernel, initramfs and its default console log. */
export const ORACLE_CACHE = process.env.ORACLE_CACHE ?? '/var/cache/dm-oracle'

/** A whole VM run (boot, scenario, power-off) may take this long before we give up. */
const RUN_TIMEOUT_MS = 300_000
/** run-vm.sh's own VM limit (-t), below ours so its timeout report (exit 124) reaches us. */
const VM_TIMEOUT_S = 240

/** Whether this machine can run the oracle: root (apt-get, cache folder) and run-vm.sh present. */
export function oracleAvailable(): { ok: boolean; why?: string } {
  if (process.platform !== 'linux') return { ok: false, why: `the oracle needs Linux, not ${process.platform}` }
  if (process.getuid?.() !== 0) return { ok: false, why: 'the oracle must run as root (run-vm.sh installs packages and writes its cache)' }
  if (!existsSync(RUN_VM)) return { ok: false, why: `${RUN_VM} is missing (set SNAPCOW_SHARED_DIR to the shared/ folder)` }
  return { ok: true }
}

/** What one oracle run printed. */
export interface OracleRun {
  /** The scenario's stdout: `key value...` lines. */
  raw: string
  /** run-vm.sh's stderr (its `[oracle]` log lines). */
  log: string
  /** The guest kernel's release, from the `kernel` line. */
  kernel: string
}

export interface LoadSnapshotOptions {
  /** Origin image path (attached read-only as vda). */
  origin: string
  /** COW image path (attached read-only as vdb). */
  cow: string
  /** Table chunk size; the COW header's own wins unless its magic is 0. Default 8. */
  chunkSectors?: number
  /** Store type of the table. Default 'P'. */
  store?: 'P' | 'PO'
  /** An existing file at least the origin's size: the snapshot's whole content is copied onto it. */
  exportTo?: string
}

export interface LoadSnapshotResult extends OracleRun {
  /** `0 <sectors> snapshot <allocated>/<total> <metadata>` or `0 <sectors> snapshot Invalid`. */
  status: string
  /** SHA-256 of the snapshot's content as the kernel reads it, or 'read-error'. */
  checksum: string
  /** SHA-256 of the origin device under snapshot-origin. */
  originChecksum: string
  /** `dmsetup table` of the snapshot (shows the chunk size in force). */
  table: string
}

/**
 * Loads an existing origin + persistent COW store into the kernel, both attached read-only so
 * the images stay untouched, and reports the snapshot's status line and content checksum.
 * Rejects with the exit code, stdout tail and console tail if the scenario fails (e.g. the
 * kernel refuses the store: `error create snapshot`).
 * @example
 * const r = await kernelLoadSnapshot({ origin: 'origin.img', cow: 'cow.img', chunkSectors: 8 })
 * r.status   // '0 16384 snapshot 4832/8192 40'
 */
export async function kernelLoadSnapshot(options: LoadSnapshotOptions): Promise<LoadSnapshotResult> {
  const { origin, cow, chunkSectors = 8, store = 'P', exportTo } = options
  const args = ['-r', origin, '-r', cow]
  if (exportTo !== undefined) args.push('-d', exportTo)
  args.push('load-snapshot', '-c', String(chunkSectors), '-p', store)
  const run = await runOracle(args)
  return {
    ...run,
    status: field(run, 'status loaded snapshot '),
    checksum: field(run, 'checksum loaded snapshot '),
    originChecksum: field(run, 'checksum loaded origin '),
    table: field(run, 'table loaded snapshot '),
  }
}

export interface MergeOptions {
  /** Origin image path; REWRITTEN by the merge (pass a copy). */
  origin: string
  /** COW image path; REWRITTEN by the merge (pass a copy). */
  cow: string
  /** Table chunk size (the COW header's wins). Default 8. */
  chunkSectors?: number
}

export interface MergeResult extends OracleRun {
  /** `0 <sectors> snapshot-merge <allocated>/<total> <metadata>` once the merge is done. */
  status: string
  /** SHA-256 of the origin device itself after the merge device is removed. */
  originChecksum: string
}

/**
 * Merges the COW store back into the origin with the kernel's snapshot-merge target. Both
 * images are attached read-write and rewritten: callers pass copies.
 * @example
 * const r = await kernelMerge({ origin: 'origin-copy.img', cow: 'cow-copy.img' })
 */
export async function kernelMerge(options: MergeOptions): Promise<MergeResult> {
  const { origin, cow, chunkSectors = 8 } = options
  const run = await runOracle(['-d', origin, '-d', cow, 'merge', '-c', String(chunkSectors)])
  return {
    ...run,
    status: field(run, 'status merged '),
    originChecksum: field(run, 'checksum removed origin-device '),
  }
}

/** The default module set plus ext4 (the fs-check scenario mounts ext4; the oracle builds a second initramfs once). */
export const EXT4_MODULES = 'virtio_pci virtio_blk dm-mod dm-bufio dm-snapshot crc32c_generic ext4'

export interface FsCheckOptions {
  /** NBD exports attached in order as vda, vdb, ... through qemu's NBD client (`nbd+unix:///NAME?socket=PATH`). */
  disks: Array<{ uri: string; readOnly: boolean }>
  /** fs-check.sh's arguments, done in order: `ro:DEV` lists the files, `rw:DEV:FILE:TEXT` writes FILE and FILE.bin. */
  steps: string[]
}

/** The regular files one `ro:` step found: path → SHA-256. */
export interface FsListing { dev: string; files: Map<string, string> }

export interface FsCheckResult extends OracleRun {
  /** One listing per `ro:` step, in the steps' order. */
  listings: FsListing[]
  /** `DEV FILE` for each `rw:` step that finished. */
  wrote: string[]
}

/**
 * Boots the kernel with ext4 and runs the fs-check scenario over NBD exports: the kernel mounts
 * each filesystem, lists or writes files, and reports file checksums. Rejects like runOracle.
 * @example
 * const r = await kernelFsCheck({ disks: [{ uri: 'nbd+unix:///origin?socket=/tmp/s', readOnly: false }], steps: ['ro:vda'] })
 * r.listings[0].files.get('hello.txt') // 'sha256 hex'
 */
export async function kernelFsCheck(options: FsCheckOptions): Promise<FsCheckResult> {
  const args = options.disks.flatMap((disk) => [disk.readOnly ? '-N' : '-n', disk.uri])
  const run = await runOracle([...args, 'fs-check.sh', ...options.steps], { ORACLE_MODULES: EXT4_MODULES })
  const listings: FsListing[] = []
  const wrote: string[] = []
  let files = new Map<string, string>()
  for (const line of run.raw.split('\n')) {
    const words = line.trim().split(' ')
    if (words[0] === 'file' && words.length >= 4) {
      files.set(words.slice(2, -1).join(' '), words.at(-1)!)
    } else if (words[0] === 'fsdone') {
      if (Number(words[3]) !== files.size) throw new Error(`fs-check: ${line} but ${files.size} file lines (a path with odd characters?):\n${tail(run.raw, 30)}`)
      listings.push({ dev: words[1]!, files })
      files = new Map()
    } else if (words[0] === 'wrote') {
      wrote.push(words.slice(1).join(' '))
    }
  }
  return { ...run, listings, wrote }
}

/** SHA-256 (hex) of a file, streamed. */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256')
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')))
  })
}

/**
 * Runs `run-vm.sh [run-vm options] SCENARIO [ARGS]` with its own console log; rejects on a non-zero exit.
 * `env` adds to the environment (e.g. ORACLE_MODULES for a scenario that needs more modules).
 */
export async function runOracle(args: string[], env: Record<string, string> = {}): Promise<OracleRun> {
  const available = oracleAvailable()
  if (!available.ok) throw new Error(`dm-snapshot oracle unavailable: ${available.why}`)
  const dir = await mkdtemp(path.join(os.tmpdir(), 'snapcow-oracle-'))
  const consoleLog = path.join(dir, 'console.log')
  try {
    const { code, signal, stdout, stderr } = await new Promise<{
      code: number | null; signal: string | null; stdout: string; stderr: string
    }>((resolve) => {
      execFile('bash', [RUN_VM, '-c', consoleLog, '-t', String(VM_TIMEOUT_S), ...args], {
        cwd: ORACLE_DIR,
        env: { ...process.env, ...env },
        timeout: RUN_TIMEOUT_MS,
        maxBuffer: 64 << 20,
        encoding: 'utf8',
      }, (error, stdout, stderr) => {
        const e = error as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null
        resolve({
          code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
          signal: e?.signal ?? null,
          stdout,
          stderr: e !== null && typeof e.code === 'string' ? `${stderr}\n${e.message}` : stderr,
        })
      })
    })
    if (code !== 0) {
      const consoleText = await readFile(consoleLog, 'utf8').catch(() => '(no console log)')
      throw new Error([
        `oracle run failed (${signal !== null ? `killed by ${signal} after ${RUN_TIMEOUT_MS / 1000} s` : `exit code ${code}`}): ` +
          `run-vm.sh ${args.join(' ')}`,
        '--- stdout (tail) ---', tail(stdout, 20),
        '--- run-vm.sh stderr (tail) ---', tail(stderr, 20),
        '--- console (tail) ---', tail(consoleText, 30),
      ].join('\n').replace(/\x1b(\[[0-9;?]*[A-Za-z]|c)/g, '')) // SeaBIOS' terminal escapes
    }
    // fs-check prints no version lines; run-vm.sh's own log names the kernel too
    const kernel = /^kernel (\S+)$/m.exec(stdout)?.[1] ?? /, kernel (\S+)\)/.exec(stderr)?.[1] ?? 'unknown'
    return { raw: stdout, log: stderr, kernel }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The rest of the first stdout line that starts with `prefix`; throws if there is none. */
function field(run: OracleRun, prefix: string): string {
  const line = run.raw.split('\n').find((l) => l.startsWith(prefix))
  if (line === undefined) throw new Error(`oracle output has no "${prefix.trim()}" line:\n${tail(run.raw, 30)}`)
  return line.slice(prefix.length).trim()
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}
