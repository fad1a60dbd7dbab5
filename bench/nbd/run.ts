// bench/nbd/run.ts: `npm run bench -- --nbd [--quick] [--json] [--reps N]`: builds dist/ if it
// is stale, writes the base image and replay logs to a tmpfs folder, starts every server in
// turn (a fresh one per session; QD1 sessions pinned with the client to CPU 0), drives it with
// fio's nbd engine and nbdcopy, and prints the table. Children are stopped and files removed.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { machineFacts } from '../machine.js'
import { writeImage, writeIolog, ioLists } from './images.js'
import { NbdResults, TABLE_BYTES_PER_EXCEPTION } from './results.js'
import { renderNbdTable } from './table.js'
import { SYSTEMS, startServer } from './servers.js'
import type { Files, Server, System } from './servers.js'
import { findTools } from './tools.js'
import { NBD_FULL, NBD_QUICK, copySession, fioSession } from './workloads.js'
import type { Logs, Sink } from './workloads.js'

export interface NbdOptions { quick: boolean; json: boolean; reps: number; tmpfsRoot: string; log(line: string): void }

const SOURCES = ['index.ts', 'nbd.ts', 'cli', 'io', 'actors', 'machines']

/** dist/cli.js, rebuilt with `tsup` (the package build) when missing or older than a source file. */
function ensureCli(root: string, log: (line: string) => void): { cli: string; note: string } {
  const cli = path.join(root, 'dist', 'cli.js')
  const newest = (p: string): number => {
    const s = statSync(p)
    return s.isDirectory() ? Math.max(0, ...readdirSync(p).map((e) => newest(path.join(p, e)))) : s.mtimeMs
  }
  const sourceTime = Math.max(...SOURCES.map((s) => path.join(root, s)).filter(existsSync).map(newest))
  if (existsSync(cli) && statSync(cli).mtimeMs >= sourceTime) return { cli, note: 'dist/cli.js is up to date' }
  log(existsSync(cli) ? 'dist/cli.js is older than the sources: building (tsup)' : 'dist/cli.js is missing: building (tsup)')
  execFileSync(path.join(root, 'node_modules', '.bin', 'tsup'), ['--silent'], { cwd: root, stdio: 'inherit' })
  return { cli, note: 'dist/cli.js built by tsup for this run' }
}

export async function runNbdBench(opts: NbdOptions): Promise<void> {
  const started = performance.now()
  const tools = findTools()
  if (tools.advice !== '') opts.log(tools.advice)
  if (!tools.has('fio')) {
    const why = `fio is missing: the NBD benchmark drives every server with fio's nbd engine (${tools.advice})`
    if (opts.json) console.log(JSON.stringify({ skipped: why, rows: [] }))
    else console.log(why)
    return
  }
  const root = process.cwd()
  const { cli, note: build } = ensureCli(root, opts.log)
  const sizes = opts.quick ? NBD_QUICK : NBD_FULL
  const wanted = SYSTEMS.filter((s) => !opts.quick || s.name === 'snapcow')
  const runnable = wanted.filter((s) => s.needs.every((t) => tools.has(t)))
  const skipped = [
    ...wanted.filter((s) => !runnable.includes(s)).map((s) => `${s.name} (needs ${s.needs.filter((t) => !tools.has(t)).join(', ')})`),
    ...(opts.quick ? SYSTEMS.filter((s) => !wanted.includes(s)).map((s) => `${s.name} (--quick runs snapcow only)`) : []),
  ]
  const pinnable = tools.has('taskset')
  const dir = await mkdtemp(path.join(opts.tmpfsRoot, 'snapcow-nbd-'))
  const files: Files = { dir, base: path.join(dir, 'base.raw'), bytes: sizes.deviceBytes, cli }
  const results = new NbdResults()
  const incidents: string[] = []
  const region = sizes.deviceBytes - sizes.seqBytes
  const lists = ioLists(region, sizes.reads, 0x5eed)
  const logs: Logs = { writes: path.join(dir, 'writes.iolog'), copiedReads: path.join(dir, 'copied.iolog'), uncopiedReads: path.join(dir, 'uncopied.iolog') }
  const source = path.join(dir, 'source.raw')
  let server: Server | undefined
  try {
    await writeImage(files.base, sizes.deviceBytes)
    if (tools.has('nbdcopy')) await writeImage(source, sizes.deviceBytes)
    await writeIolog(logs.writes, 'write', lists.writes)
    await writeIolog(logs.copiedReads, 'read', lists.copiedReads)
    await writeIolog(logs.uncopiedReads, 'read', lists.uncopiedReads)
    // Each session on a fresh server; one that dies (nbdkit 1.32 sometimes aborts when fio's
    // replay disconnects with requests in flight) is run again, up to 3 times. A peer that
    // dies every time loses that session's figures, said under the table; snapcow dying is a
    // bug and stops the run.
    const session = async (system: System, label: string, pin: boolean, body: (s: Server) => Promise<void>): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        server = await startServer(system, files, pin)
        try { await body(server); return } catch (error) {
          if (server.alive()) throw error
          const message = (error as Error).message
          if (attempt >= 3) {
            if (system.name.startsWith('snapcow')) throw error
            incidents.push(`${system.name} ${label}: died in 3 attempts (last: ${message}); that session's figures are missing`)
            opts.log(incidents.at(-1)!)
            return
          }
          opts.log(`${system.name} ${label}: ${message}; running the session again`)
        } finally { await server.stop(); server = undefined }
      }
    }
    for (let rep = 0; rep < opts.reps; rep++) {
      // rotate the order per repetition, so drift does not always favour the same system
      const order = runnable.map((_, i) => runnable[(i + rep) % runnable.length]!)
      for (const system of order) {
        for (const depth of [1, 32]) {
          const pin = depth === 1 && pinnable
          opts.log(`rep ${rep + 1}/${opts.reps} ${system.name} QD ${depth}${pin ? ' (pinned to CPU 0)' : ''}`)
          await session(system, `rep ${rep + 1} QD ${depth}`, pin, (s) => {
            const sink: Sink = {
              record: (w, m) => results.record(system.name, w, depth, rep, m),
              afterFirstTouch: (srv) => { if (depth === 32) results.recordHwm(system.name, rep, srv.hwmKiB()) },
            }
            return fioSession(s, depth, pin, sizes, logs, sink)
          })
        }
        if (tools.has('nbdcopy')) {
          opts.log(`rep ${rep + 1}/${opts.reps} ${system.name} nbdcopy`)
          await session(system, `rep ${rep + 1} nbdcopy`, false, (s) => copySession(s, source, sizes.deviceBytes, {
            record: (w, m) => results.record(system.name, w, undefined, rep, m), afterFirstTouch: () => {},
          }))
        }
      }
    }
  } finally {
    await server?.stop()
    await rm(dir, { recursive: true, force: true })
  }
  const rows = results.rows(lists.writes.length)
  const seconds = (performance.now() - started) / 1000
  const head = [
    `${opts.quick ? 'quick run' : 'full run'}: ${opts.reps} repetition(s); device ${sizes.deviceBytes >> 20} MiB on tmpfs; ${lists.writes.length} first-touch 4 KiB writes ` +
      `(one per 64 KiB chunk of the first ${region >> 20} MiB, shuffled, replayed from a fio log), the same list rewritten, ${sizes.reads} 4 KiB reads each of copied and uncopied chunks; ` +
      `1 MiB sequential write then read of the last ${sizes.seqBytes >> 20} MiB; nbdcopy of the whole device in from a tmpfs file and out to null:; ${seconds.toFixed(0)} s`,
    `QD1: ${pinnable ? 'server and fio pinned to CPU 0 (taskset)' : 'NOT pinned (taskset missing): QD1 numbers are placement noise'}; QD32 and nbdcopy unpinned. ` +
      `Each session starts a fresh server on a fresh overlay. Values: ops/s for 4 KiB, MB/s for 1 MiB and nbdcopy; latency is fio's total latency.`,
    `${build}; tools: ${tools.versions.join('; ')}`,
    ...runnable.map((s) => `- ${s.name}: ${s.what}`),
    `skipped: ${skipped.length === 0 ? 'none' : skipped.join('; ')}${tools.advice === '' ? '' : ` (${tools.advice})`}`,
    ...(incidents.length === 0 ? [] : [`peers that died: ${incidents.join('; ')}`]),
    `RSS target: snapcow's VmHWM ≤ 2× qemu-qcow2-4k's + ${TABLE_BYTES_PER_EXCEPTION} B per exception.`,
  ]
  if (opts.json) console.log(JSON.stringify({ machine: machineFacts(dir), nbd: true, quick: opts.quick, reps: opts.reps, sizes, seconds, tools: tools.versions, skipped, incidents, rows }, null, 2))
  else console.log(renderNbdTable(machineFacts(dir), head, rows))
}
