// bench/harness.ts: what every workload shares: devices of each kind (MemoryDevice, or a
// FileDevice on a tmpfs file), a queue-depth driver that times N operations, and a seeded
// shuffle so raw and snapcow runs replay the very same I/O pattern.
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { FileDevice, MemoryDevice } from '../index.js'
import type { BlockDevice } from '../index.js'

export type DeviceKind = 'memory' | 'file'

/** Makes devices of one kind and removes their files afterwards (tmpfs files are memory). */
export class Devices {
  #files = new Map<BlockDevice, string>()
  #serial = 0

  constructor(readonly dir: string) {}

  /**
   * A zero-filled device whose memory is already faulted in: every byte is written once
   * before it is handed out. The raw baselines write to prefilled devices, so snapcow's COW
   * devices must not pay the kernel's first-touch page faults that raw never pays.
   * `prefault: false` for devices too big to fill (the million-exception store's).
   */
  async make(kind: DeviceKind, size: number, { prefault = true } = {}): Promise<BlockDevice> {
    let device: BlockDevice
    if (kind === 'memory') device = new MemoryDevice(size)
    else {
      const file = path.join(this.dir, `dev-${process.pid}-${this.#serial++}.img`)
      device = await FileDevice.open(file, { create: true, size })
      this.#files.set(device, file)
    }
    if (prefault) await fill(device, size, 0)
    return device
  }

  /** Closes the devices and deletes their files. */
  async release(...devices: BlockDevice[]): Promise<void> {
    for (const device of devices) {
      await device.close()
      const file = this.#files.get(device)
      if (file !== undefined) {
        this.#files.delete(device)
        await rm(file, { force: true })
      }
    }
  }

  async releaseAll(): Promise<void> {
    await this.release(...this.#files.keys())
  }
}

/**
 * Runs `count` operations with `depth` of them in flight (one worker per slot, each taking
 * the next index); returns elapsed seconds. `op` gets the index and its worker's number.
 */
export async function runOps(count: number, depth: number, op: (i: number, worker: number) => Promise<void>): Promise<number> {
  let next = 0
  const worker = async (w: number): Promise<void> => {
    for (let i = next++; i < count; i = next++) await op(i, w)
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: Math.max(1, Math.min(depth, count)) }, (_, w) => worker(w)))
  return (performance.now() - start) / 1000
}

/**
 * Seconds per pass of a repeatable pattern (raw reads, overwrites): passes are repeated until
 * `minSeconds` have gone by, so a fast device is not timed over a fraction of a millisecond.
 */
export async function repeatedPass(pass: () => Promise<number>, minSeconds = 0.1): Promise<number> {
  let total = 0
  let passes = 0
  do {
    total += await pass()
    passes++
  } while (total < minSeconds)
  return total / passes
}

/** 0 … n−1 in a seeded random order (xorshift32 + Fisher–Yates): the same list every run. */
export function shuffled(n: number, seed = 0x9e3779b9): number[] {
  const list = Array.from({ length: n }, (_, i) => i)
  let s = seed >>> 0 || 1
  for (let i = n - 1; i > 0; i--) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0
    const j = s % (i + 1)
    const t = list[i]!
    list[i] = list[j]!
    list[j] = t
  }
  return list
}

/** One read buffer per worker (reads fill them; contents are never checked). */
export const buffers = (depth: number, bytes: number): Uint8Array[] =>
  Array.from({ length: depth }, () => new Uint8Array(bytes))

/** Fills `bytes` of a device from offset 0 with a non-zero pattern, 1 MiB per write. */
export async function prefill(device: BlockDevice, bytes: number): Promise<void> {
  await fill(device, bytes, 0xa5)
}

async function fill(device: BlockDevice, bytes: number, value: number): Promise<void> {
  const piece = new Uint8Array(Math.min(bytes, 1 << 20)).fill(value)
  for (let at = 0; at < bytes; at += piece.length) await device.write(at, piece.subarray(0, Math.min(piece.length, bytes - at)))
}

/** COW bytes for `chunks` data chunks of a persistent store (header, metadata areas, slack). */
export const cowBytesFor = (chunks: number, chunkBytes = 4096): number =>
  (chunks + Math.ceil(chunks / (chunkBytes / 16)) + 8) * chunkBytes
