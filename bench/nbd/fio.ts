// bench/nbd/fio.ts: one fio job with the nbd engine (libnbd) against a server, and nbdcopy
// runs, each reduced to throughput and total-latency percentiles (submission + completion:
// with the nbd engine part of each round trip happens inside the submit call).
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface Measured {
  iops: number
  MBps: number
  /** Total latency percentiles, µs (absent for nbdcopy). */
  p50us?: number
  p99us?: number
}

export interface FioJob {
  uri: string
  depth: number
  /** taskset -c 0 (the server must be pinned too). */
  pin: boolean
  /** fio arguments after the common ones: --rw, --bs, --read_iolog, --offset, --size … */
  args: readonly string[]
}

interface FioSide { io_bytes: number; bw_bytes: number; iops: number; total_ios: number; lat_ns?: { percentile?: Record<string, number> }; clat_ns?: { percentile?: Record<string, number> } }

export async function fio(job: FioJob): Promise<Measured> {
  const argv = ['fio', '--name=j', '--ioengine=nbd', `--uri=${job.uri}`, `--iodepth=${job.depth}`, '--lat_percentiles=1',
    '--output-format=json', ...job.args]
  const [cmd, ...args] = job.pin ? ['taskset', '-c', '0', ...argv] : argv
  const { stdout } = await run(cmd!, args, { maxBuffer: 64 << 20, timeout: 300_000 }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`fio ${job.args.join(' ')} failed: ${(error.stderr ?? '').trim() || error.message.split('\n')[0]}`)
  })
  const parsed = JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: Array<{ error: number; read: FioSide; write: FioSide }> }
  const j = parsed.jobs[0]!
  if (j.error !== 0) throw new Error(`fio ${job.args.join(' ')}: error ${j.error}`)
  const side = j.write.io_bytes > 0 ? j.write : j.read
  const lat = side.lat_ns?.percentile ?? side.clat_ns?.percentile
  const pct = (p: string): number | undefined => (lat?.[p] === undefined ? undefined : lat[p]! / 1000)
  const m: Measured = { iops: side.iops, MBps: side.bw_bytes / 1e6 }
  const p50 = pct('50.000000'); const p99 = pct('99.000000')
  if (p50 !== undefined) m.p50us = p50
  if (p99 !== undefined) m.p99us = p99
  return m
}

/** nbdcopy SRC DST with up to 4 connections (1 if the server does not offer multi-conn); MB/s over the wall time. */
export async function nbdcopy(src: string, dst: string, bytes: number): Promise<Measured> {
  const t0 = performance.now()
  await run('nbdcopy', ['--no-extents', '--connections=4', src, dst], { timeout: 300_000 }).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`nbdcopy ${src} ${dst} failed: ${(error.stderr ?? '').trim() || error.message.split('\n')[0]}`)
  })
  const seconds = (performance.now() - t0) / 1000
  return { iops: bytes / (1 << 20) / seconds, MBps: bytes / 1e6 / seconds }
}
