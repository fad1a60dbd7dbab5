// io/file-lock.ts: the advisory lock FileDevice.open takes on a regular file it opens for
// writing (api.md "Devices"; README "Devices"). Across processes: proper-lockfile's lock
// directory `<real path>.lock` (mkdir is atomic everywhere, NFS included), refreshed every
// 5 s and taken over once 10 s stale, so a crashed process never locks a file for good. In
// this process: a set of the files' inodes, so hard links and symlinks conflict too.
import { basename, dirname, join } from 'node:path'
import { realpath, stat } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { SnapcowError } from './errors.js'

/** How long after its last refresh a lock counts as left behind by a dead process. */
let staleMs = 10_000

/**
 * Shortens the stale time (proper-lockfile's minimum is 2000 ms; it refreshes at half of it).
 * @internal For tests of stale and lost locks.
 * @example
 * setLockStaleMs(2000)
 */
export function setLockStaleMs(ms: number): void {
  staleMs = ms
}

/** Inodes (`dev:ino`) of the files this process holds a write lock on, and the path used. */
const lockedHere = new Map<string, string>()
const inode = (stats: Stats): string => `${stats.dev}:${stats.ino}`

/**
 * A held lock on one regular file; `release()` gives it back.
 * @internal FileDevice's; not exported from the package.
 */
export class FileLock {
  /** Set when the lock was lost while held (its directory removed or taken over). */
  lost: SnapcowError | undefined
  readonly #release: () => Promise<void>
  #inode: string | undefined

  private constructor(release: () => Promise<void>, inodeKey: string | undefined) {
    this.#release = release
    this.#inode = inodeKey
  }

  /**
   * Locks `path` (an existing file with `found` stats, or one about to be created) or throws
   * SNAPCOW_BUSY naming it; SNAPCOW_IO when the lock directory cannot be made.
   * @example
   * const lock = await FileLock.take('/tmp/cow.img', await stat('/tmp/cow.img'))
   */
  static async take(path: string, found: Stats | undefined, waitForStale = false): Promise<FileLock> {
    const key = found === undefined ? undefined : inode(found)
    // Checked and reserved before any await: two opens racing in this process cannot both win.
    const other = key === undefined ? undefined : lockedHere.get(key)
    if (other !== undefined) {
      throw new SnapcowError('SNAPCOW_BUSY', `${path} is already open for writing in this process` +
        (other === path ? '' : ` (as ${other}, the same file)`) + ': close that FileDevice first, or open this one with readOnly: true')
    }
    if (key !== undefined) lockedHere.set(key, path)
    try {
      const target = await canonicalPath(path, found !== undefined)
      const lockPath = `${target}.lock`
      const { lock } = await import('proper-lockfile') // loaded on first use: it hooks process exit
      const holder: { lock?: FileLock } = {}
      const acquire = () => lock(target, {
        realpath: false, stale: staleMs, lockfilePath: lockPath,
        onCompromised: (cause) => {
          if (holder.lock !== undefined) holder.lock.lost = lostError(path, lockPath, cause)
        },
      })
      let release: () => Promise<void>
      try {
        try {
          release = await acquire()
        } catch (cause) {
          // A holder that crashed stops refreshing its lock: once that is seen, wait for the lock
          // to go stale and take it over, rather than fail a restart for 10 s.
          if ((cause as NodeJS.ErrnoException).code !== 'ELOCKED' || !waitForStale || !(await holderGone(lockPath))) throw cause
          release = await acquire()
        }
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code === 'ELOCKED') throw busyError(path, lockPath, cause)
        const code = (cause as NodeJS.ErrnoException).code
        throw new SnapcowError('SNAPCOW_IO', `FileDevice.open: cannot take the lock ${lockPath} for ${path}` +
          `${code ? `: ${code}` : ''} (pass lock: false if you coordinate access to the file yourself)`, { cause })
      }
      holder.lock = new FileLock(release, key)
      return holder.lock
    } catch (error) {
      if (key !== undefined) lockedHere.delete(key)
      throw error
    }
  }

  /** Registers the inode of the file created under this lock. Throws SNAPCOW_BUSY if it is already held. */
  bind(stats: Stats, path: string): void {
    const key = inode(stats)
    if (lockedHere.has(key)) throw new SnapcowError('SNAPCOW_BUSY', `${path} is already open for writing in this process`)
    lockedHere.set(key, path)
    this.#inode = key
  }

  /** Gives the lock back (the lock directory is removed). Harmless after the lock was lost. */
  async release(): Promise<void> {
    if (this.#inode !== undefined) lockedHere.delete(this.#inode)
    this.#inode = undefined
    try {
      await this.#release()
    } catch (error) {
      // ERELEASED: already lost (compromised); nothing of ours is left to remove.
      if ((error as NodeJS.ErrnoException).code !== 'ERELEASED') throw error
    }
  }
}

/** The lock directory's mtime in ms, or undefined once it is gone. */
async function lockTime(lockPath: string): Promise<number | undefined> {
  try {
    return (await stat(lockPath)).mtimeMs
  } catch {
    return undefined
  }
}

/**
 * Watches a held lock: its holder refreshes the directory's mtime every `staleMs / 2`. True
 * (the holder is gone) if it disappears, or goes unrefreshed until it is stale (then
 * proper-lockfile takes it over); false as soon as a refresh shows the holder alive.
 */
async function holderGone(lockPath: string): Promise<boolean> {
  const first = await lockTime(lockPath)
  if (first === undefined) return true
  const staleAt = first + staleMs + 250
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, Math.max(10, Math.min(250, staleAt - Date.now()))))
    const now = await lockTime(lockPath)
    if (now === undefined) return true
    if (now !== first) return false
    if (Date.now() >= staleAt) return true
  }
}

/** Symlinks resolved, so every name of a file gets one lock directory beside the real file. */
async function canonicalPath(path: string, exists: boolean): Promise<string> {
  if (exists) return realpath(path)
  return join(await realpath(dirname(path)), basename(path))
}

function busyError(path: string, lockPath: string, cause: unknown): SnapcowError {
  const seconds = Math.round(staleMs / 1000)
  return new SnapcowError('SNAPCOW_BUSY',
    `${path} is in use by another writer: its lock ${lockPath} is held by another process or another FileDevice. ` +
    `If no process uses the file any more (one crashed), the lock goes stale ${seconds} s after its last refresh ` +
    `and the next open takes it over; or remove the directory ${lockPath} once you are sure. ` +
    'Open with readOnly: true to read alongside the writer, or lock: false if you coordinate access yourself', { cause })
}

function lostError(path: string, lockPath: string, cause: unknown): SnapcowError {
  return new SnapcowError('SNAPCOW_BUSY',
    `${path} lost its lock ${lockPath} while open (the directory was removed, or another process took it ` +
    'over after the event loop stalled): writes are refused from now on; close the device and open it again', { cause })
}
