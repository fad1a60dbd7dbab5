// bench/nbd/workloads.ts: what one fresh server goes through. A fio session per queue depth
// (uncopied reads, first touch, rewrite, copied reads on the random region; 1 MiB sequential
// write then read on the region after it) and an nbdcopy session (whole device in, then out).
import type { Measured } from './fio.js'
import { fio, nbdcopy } from './fio.js'
import type { Server } from './servers.js'

export const NW = {
  uncopiedRead: 'randread 4 KiB, uncopied chunks',
  firstTouch: 'randwrite 4 KiB, first touch',
  rewrite: 'randwrite 4 KiB, rewrite',
  copiedRead: 'randread 4 KiB, copied chunks',
  seqWrite: 'seqwrite 1 MiB, first touch',
  seqRead: 'seqread 1 MiB, copied',
  copyIn: 'nbdcopy in (whole device, 4 connections)',
  copyOut: 'nbdcopy out to null: (4 connections)',
} as const

export interface NbdSizes {
  deviceBytes: number
  /** The sequential region at the end of the device; the random region is the rest. */
  seqBytes: number
  /** 4 KiB reads per read measurement. */
  reads: number
}

export const NBD_FULL: NbdSizes = { deviceBytes: 512 << 20, seqBytes: 128 << 20, reads: 16384 }
export const NBD_QUICK: NbdSizes = { deviceBytes: 64 << 20, seqBytes: 16 << 20, reads: 2048 }

export interface Logs { writes: string; copiedReads: string; uncopiedReads: string }

/** Called with each measurement; `afterFirstTouch` right after the first-touch run (for VmHWM). */
export interface Sink {
  record(workload: string, measured: Measured): void
  afterFirstTouch(server: Server): void
}

export async function fioSession(server: Server, depth: number, pin: boolean, sizes: NbdSizes, logs: Logs, sink: Sink): Promise<void> {
  const job = async (workload: string, args: string[]): Promise<void> => {
    const measured = await fio({ uri: server.uri, depth, pin, args })
    if (!server.alive()) throw new Error(`${server.system.name} died during "${workload}" at QD ${depth}`)
    sink.record(workload, measured)
  }
  const size = `--size=${sizes.deviceBytes}`
  const replay = (log: string, rw: string): string[] => [`--rw=${rw}`, '--bs=4k', size, `--read_iolog=${log}`, '--replay_no_stall=1']
  await job(NW.uncopiedRead, replay(logs.uncopiedReads, 'randread'))
  await job(NW.firstTouch, replay(logs.writes, 'randwrite'))
  sink.afterFirstTouch(server)
  await job(NW.rewrite, replay(logs.writes, 'randwrite'))
  await job(NW.copiedRead, replay(logs.copiedReads, 'randread'))
  const seq = [`--offset=${sizes.deviceBytes - sizes.seqBytes}`, `--size=${sizes.seqBytes}`, '--bs=1m']
  await job(NW.seqWrite, ['--rw=write', ...seq])
  await job(NW.seqRead, ['--rw=read', ...seq])
}

/** Whole-device nbdcopy from `source` (a file as big as the device) into the server, then out. */
export async function copySession(server: Server, source: string, bytes: number, sink: Sink): Promise<void> {
  sink.record(NW.copyIn, await nbdcopy(source, server.uri, bytes))
  sink.record(NW.copyOut, await nbdcopy(server.uri, 'null:', bytes))
  if (!server.alive()) throw new Error(`${server.system.name} died during nbdcopy`)
}
