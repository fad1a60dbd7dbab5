// bench/machine.ts: the facts printed above the table, so a reader knows what ran the numbers.
import os from 'node:os'

export interface MachineFacts {
  cpu: string
  cores: number
  memoryGiB: number
  node: string
  kernel: string
  loadAverage: string
  tmpfs: string
}

export function machineFacts(tmpfs: string): MachineFacts {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    loadAverage: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    tmpfs,
  }
}
