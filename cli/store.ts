// cli/store.ts: what several commands share: opening image files with errors that name them,
// reading a store, and the dmsetup status and table lines computed from what is on disk.
import { FileDevice, readCowStore, SECTOR_BYTES } from '../index.js'
import type { CowStoreInfo } from '../index.js'
import fs from 'node:fs/promises'
import { CliError, on } from './fail.js'

/** Says plainly what is wrong with a path before the library is asked to open it. */
async function checkImage(path: string): Promise<void> {
  const stat = await on(path, () => fs.stat(path))
  if (stat.isDirectory()) throw new CliError(path, 'is a directory, not an image file')
  if (stat.isFile() && stat.size % SECTOR_BYTES !== 0) {
    throw new CliError(path, `is ${stat.size} bytes, not a multiple of 512: an image holds whole 512-byte sectors`)
  }
}

/** Opens an existing image read-only (no lock: works beside a running writer). */
export async function openReadOnly(path: string): Promise<FileDevice> {
  await checkImage(path)
  return on(path, () => FileDevice.open(path, { readOnly: true }))
}

/**
 * Opens an existing image for writing (takes the writer's lock). A lock left by a process that
 * was killed is waited out (at most about 10 s) rather than refused, so a restart just works.
 */
export async function openWritable(path: string): Promise<FileDevice> {
  await checkImage(path)
  // Only a held lock makes an open take this long: say why nothing happens meanwhile.
  const waiting = setTimeout(() => console.error(`snapcow: ${path}: waiting for its lock (held by another process, ` +
    'or left by one that died: that is taken over within about 10 s)'), 3000)
  try {
    return await on(path, () => FileDevice.open(path, { waitForStaleLock: true }))
  } finally {
    clearTimeout(waiting)
  }
}

/** Runs `work` on a read-only device and closes it whatever happens. */
export async function withReadOnly<T>(path: string, work: (device: FileDevice) => Promise<T>): Promise<T> {
  const device = await openReadOnly(path)
  try {
    return await on(path, () => work(device))
  } finally {
    await device.close()
  }
}

export interface StoreReport { path: string; bytes: number; info: CowStoreInfo }

/** readCowStore on a file, its errors naming the file. */
export function readStore(path: string, options: { originSize?: number; scanInvalid?: boolean } = {}): Promise<StoreReport> {
  return withReadOnly(path, async (cow) => ({ path, bytes: cow.size, info: await readCowStore(cow, options) }))
}

export interface StatusFields {
  state: 'active' | 'invalid'
  allocatedSectors: number
  totalSectors: number
  metadataSectors: number
  line: string
}

/** The `dmsetup status` line of a persistent snapshot of an origin of `originBytes` (spec §14). */
export function statusOf(originBytes: number, store: StoreReport): StatusFields {
  const { info } = store
  const cs = info.chunkSectors
  const totalSectors = Math.floor(store.bytes / SECTOR_BYTES)
  const allocatedSectors = info.nextFreeChunk * cs
  const metadataSectors = (info.metadataAreas + 1) * cs // (current_area + 2) × cs
  const head = `0 ${originBytes / SECTOR_BYTES} snapshot`
  return info.valid
    ? { state: 'active', allocatedSectors, totalSectors, metadataSectors, line: `${head} ${allocatedSectors}/${totalSectors} ${metadataSectors}` }
    : { state: 'invalid', allocatedSectors, totalSectors, metadataSectors, line: `${head} Invalid` }
}

/** The `dmsetup table` line, with file paths where dmsetup prints major:minor. */
export function tableOf(originPath: string, originBytes: number, store: StoreReport, overflow = false): string {
  return `0 ${originBytes / SECTOR_BYTES} snapshot ${originPath} ${store.path} ${overflow ? 'PO' : 'P'} ${store.info.chunkSectors}`
}

export interface Extent { originChunk: number; cowChunk: number; chunks: number }

/** The exceptions as runs, in origin order, merging records consecutive on both sides. */
export function extentsOf(exceptions: ReadonlyArray<readonly [number, number]>): Extent[] {
  const sorted = [...exceptions].sort((a, b) => a[0] - b[0])
  const runs: Extent[] = []
  for (const [oldChunk, newChunk] of sorted) {
    const last = runs.at(-1)
    if (last !== undefined && last.originChunk + last.chunks === oldChunk && last.cowChunk + last.chunks === newChunk) last.chunks++
    else runs.push({ originChunk: oldChunk, cowChunk: newChunk, chunks: 1 })
  }
  return runs
}
