// io/file-device.ts: a block device on a regular file or a Linux block device (api.md
// "Devices"), through one FileHandle with positional I/O. `open()` owns the sizing rules and
// the exclusive claim of a writer (io/file-lock.ts; O_EXCL for block devices); reads and
// writes loop until the whole buffer is done, so short transfers never leak out.

import { open as openHandle, readFile, rm, stat, type FileHandle } from 'node:fs/promises'
import { constants, read, write, type Stats } from 'node:fs'
import type { ByteOffset } from './units.js'
import { checkDeviceSize, DeviceBase } from './device-base.js'
import { SnapcowError } from './errors.js'
import { FileLock } from './file-lock.js'

/**
 * Options for {@link FileDevice.open}.
 * @example
 * const options: FileDeviceOptions = { create: true, size: 64 << 20 }
 */
export interface FileDeviceOptions {
  /** Device size in bytes; required to create a file, optional otherwise. */
  size?: number
  /** Create a missing file (sparse, `size` bytes) or grow a smaller one to `size`. */
  create?: boolean
  /** Open with 'r'; writes reject with `SNAPCOW_READ_ONLY`. Cannot be combined with `create`. */
  readOnly?: boolean
  /**
   * Default true: a device opened for writing is claimed exclusively, and a second writer, in
   * this process or another, is refused with `SNAPCOW_BUSY` naming the file, as the kernel and
   * LVM refuse a device in use. A regular file gets an advisory lock directory `<real path>.lock`
   * (proper-lockfile: Node has no flock(2); it is released by `close()` and on process exit, and
   * a crashed process's lock goes stale after 10 s and is taken over); a block device is opened
   * with `O_EXCL`, the kernel's own claim (refused while mounted, held by device-mapper, LVM or
   * another exclusive opener). Read-only opens take no lock: they never conflict with each other
   * nor with a writer, and may see a store mid-update. `false` skips the claim, for callers who
   * coordinate access themselves.
   */
  lock?: boolean
  /**
   * When the file's lock is held: watch it instead of failing at once. A holder that no longer
   * refreshes it (its process was killed) is waited out until the lock is stale (at most about
   * 10 s) and the lock is taken over; a live holder still gets `SNAPCOW_BUSY`, once a refresh
   * shows it alive (within about 5 s). Default false. `snapcow` commands set it, so a server
   * restarted right after `kill -9` comes up.
   */
  waitForStaleLock?: boolean
}

/**
 * A block device on a file or block device path; survives close and reopen.
 * `flush()` is `fdatasync`. Opened for writing, it holds the file exclusively until `close()`
 * (see {@link FileDeviceOptions.lock}).
 * @example
 * const dev = await FileDevice.open('/tmp/cow.img', { create: true, size: 64 << 20 })
 * await dev.write(0, new Uint8Array(512).fill(1))
 * await dev.flush()
 * await dev.close()
 */
export class FileDevice extends DeviceBase {
  /** The path this device was opened from. */
  readonly path: string
  readonly #handle: FileHandle
  readonly #lock: FileLock | undefined
  /**
   * A second descriptor of the same open file with O_DSYNC, for forced-unit-access writes:
   * one syscall makes a metadata area durable where write + fdatasync take two threadpool
   * round trips. Opened with a writable device, through /proc/self/fd (the very same file,
   * never a path that may have been replaced), so the descriptors a device holds do not change
   * while it is used; `null` when that is not possible (then write + flush).
   */
  readonly #dsync: Promise<FileHandle | null> | undefined

  private constructor(path: string, handle: FileHandle, size: number, readOnly: boolean, lock: FileLock | undefined) {
    super(size, { flush: true, persistent: true }, { readOnly })
    this.path = path
    this.#handle = handle
    this.#lock = lock
    this.#dsync = readOnly ? undefined : openDsync(handle.fd)
  }

  /**
   * Opens (or creates) a file-backed device. An existing file gives its own size unless `size`
   * is passed (the file must be at least that big, or `create` grows it); a missing file needs
   * `create: true` and `size`; a block device without `size` is sized from sysfs. Opened for
   * writing, the file is claimed exclusively unless `lock: false`: a second writer rejects with
   * `SNAPCOW_BUSY` naming the file. A failed create leaves no file behind.
   * @example
   * const dev = await FileDevice.open('/tmp/origin.img', { readOnly: true })
   */
  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const { size, create = false, readOnly = false, lock = true, waitForStaleLock = false } = options
    if (typeof path !== 'string' || path === '') throw new TypeError('FileDevice.open: path must be a non-empty string')
    if (create && readOnly) throw new TypeError(`FileDevice.open: create and readOnly cannot be combined (${path})`)
    if (typeof lock !== 'boolean') throw new TypeError(`FileDevice.open: lock must be a boolean, got ${String(lock)}`)
    if (typeof waitForStaleLock !== 'boolean') throw new TypeError(`FileDevice.open: waitForStaleLock must be a boolean, got ${String(waitForStaleLock)}`)
    if (size !== undefined) checkDeviceSize(size, 'FileDevice.open: size')

    const found = await statIfAny(path)
    if (found === undefined) {
      if (!create) throw new SnapcowError('SNAPCOW_IO', `FileDevice.open: ${path} does not exist (pass create: true and a size)`)
      if (size === undefined) throw new TypeError(`FileDevice.open: size is required to create ${path}`)
    } else if (!found.isFile() && !found.isBlockDevice()) {
      throw new TypeError(`FileDevice.open: ${path} is not a regular file or block device`)
    }
    const exclusive = lock && !readOnly
    const blockDevice = found?.isBlockDevice() === true
    const fileLock = exclusive && !blockDevice ? await FileLock.take(path, found, waitForStaleLock) : undefined
    try {
      if (found === undefined) return await FileDevice.#create(path, size!, fileLock)
      const handle = await openExisting(path, readOnly, exclusive && blockDevice)
      try {
        const deviceSize = await sizeOf(path, handle, await handle.stat(), size, create && !readOnly)
        return new FileDevice(path, handle, deviceSize, readOnly, fileLock)
      } catch (error) {
        await handle.close()
        throw error
      }
    } catch (error) {
      await fileLock?.release()
      throw error
    }
  }

  static async #create(path: string, size: number, lock: FileLock | undefined): Promise<FileDevice> {
    let handle: FileHandle
    try {
      handle = await openHandle(path, 'wx+') // exclusive: never clobber a file that appeared meanwhile
    } catch (error) {
      throw ioError(`FileDevice.open: cannot create ${path}`, error)
    }
    try {
      lock?.bind(await handle.stat(), path)
      try {
        await handle.truncate(size) // sparse: no data blocks until written
      } catch (error) {
        throw ioError(`FileDevice.open: cannot size ${path} to ${size} bytes`, error)
      }
      return new FileDevice(path, handle, size, false, lock)
    } catch (error) {
      await handle.close()
      await rm(path, { force: true }) // the file is ours (wx+): a failed create leaves nothing behind
      throw error
    }
  }

  // Reads and writes use the callback API on the handle's descriptor: FileHandle's promise
  // methods cost about 1.7× as much per request here. One promise per request; a short
  // transfer goes round again from the callback, so it never leaks out.
  protected override _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.#readFrom(offset, into, 0, resolve, reject))
  }

  #readFrom(offset: number, into: Uint8Array, done: number, resolve: () => void, reject: (error: Error) => void): void {
    read(this.#handle.fd, into, done, into.length - done, offset + done, (error, bytesRead) => {
      if (error !== null) return reject(ioError(`${this.path}: read failed at offset ${offset + done}`, error))
      // End of file inside the device: the file shrank under us. Never hand back short data.
      if (bytesRead === 0) return reject(new SnapcowError('SNAPCOW_IO', `${this.path}: unexpected end of file at offset ${offset + done}`))
      if (done + bytesRead < into.length) return this.#readFrom(offset, into, done + bytesRead, resolve, reject)
      resolve()
    })
  }

  protected override _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    if (this.#lock?.lost !== undefined) return Promise.reject(this.#lock.lost) // another writer may have the file now
    return new Promise((resolve, reject) => this.#writeFrom(offset, data, 0, resolve, reject))
  }

  #writeFrom(offset: number, data: Uint8Array, done: number, resolve: () => void, reject: (error: Error) => void, fd = this.#handle.fd): void {
    write(fd, data, done, data.length - done, offset + done, (error, bytesWritten) => {
      if (error !== null) return reject(ioError(`${this.path}: write failed at offset ${offset + done}`, error))
      if (done + bytesWritten < data.length) return this.#writeFrom(offset, data, done + bytesWritten, resolve, reject, fd)
      resolve()
    })
  }

  /** One O_DSYNC write when the second descriptor could be opened, else write then fdatasync. */
  protected override async _writeFua(offset: ByteOffset, data: Uint8Array): Promise<void> {
    if (this.#lock?.lost !== undefined) throw this.#lock.lost
    const dsync = await this.#dsync
    if (dsync === null || dsync === undefined || this.closed) return super._writeFua(offset, data)
    return new Promise((resolve, reject) => this.#writeFrom(offset, data, 0, resolve, reject, dsync.fd))
  }

  protected override async _flush(): Promise<void> {
    try {
      await this.#handle.datasync()
    } catch (error) {
      throw ioError(`${this.path}: flush failed`, error)
    }
  }

  protected override async _close(): Promise<void> {
    try {
      await (await this.#dsync)?.close()
      await this.#handle.close()
    } finally {
      await this.#lock?.release()
    }
  }
}

/** The open file `fd` again, write-only with O_DSYNC; null where /proc/self/fd is missing or refuses. */
async function openDsync(fd: number): Promise<FileHandle | null> {
  try {
    return await openHandle(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_DSYNC)
  } catch {
    return null
  }
}

/** The path's stats (symlinks followed), or undefined when nothing is there. */
async function statIfAny(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path)
  } catch (error) {
    if (isNodeError(error, 'ENOENT')) return undefined
    throw ioError(`FileDevice.open: cannot open ${path}`, error)
  }
}

/** Opens an existing path; a writable block device with O_EXCL, the kernel's exclusive claim. */
async function openExisting(path: string, readOnly: boolean, exclusiveBlockDevice: boolean): Promise<FileHandle> {
  const flags = readOnly ? 'r' : exclusiveBlockDevice ? constants.O_RDWR | constants.O_EXCL : 'r+'
  try {
    return await openHandle(path, flags)
  } catch (error) {
    if (exclusiveBlockDevice && isNodeError(error, 'EBUSY')) {
      throw new SnapcowError('SNAPCOW_BUSY',
        `${path} is a block device in use: mounted, held by device-mapper or LVM, or open for writing by another ` +
        'process or FileDevice (the kernel refuses a second exclusive open, O_EXCL). Open with readOnly: true ' +
        'to read it, or lock: false if you coordinate access yourself', { cause: error })
    }
    throw ioError(`FileDevice.open: cannot open ${path}`, error)
  }
}

/** The device size for an opened path, growing a regular file when allowed. */
async function sizeOf(
  path: string,
  handle: FileHandle,
  stat: Stats,
  size: number | undefined,
  mayGrow: boolean,
): Promise<number> {
  if (stat.isBlockDevice()) {
    const actual = await blockDeviceBytes(stat.rdev)
    if (size === undefined) {
      if (actual === undefined) throw new TypeError(`FileDevice.open: cannot read the size of block device ${path}; pass size`)
      return actual
    }
    if (actual !== undefined && size > actual) {
      throw new RangeError(`FileDevice.open: size ${size} is larger than block device ${path} (${actual} bytes)`)
    }
    return size
  }
  if (!stat.isFile()) throw new TypeError(`FileDevice.open: ${path} is not a regular file or block device`) // replaced meanwhile
  if (size === undefined) {
    if (stat.size % 512 !== 0) {
      throw new RangeError(`FileDevice.open: ${path} is ${stat.size} bytes, not a multiple of 512; pass size`)
    }
    return stat.size
  }
  if (stat.size < size) {
    if (!mayGrow) {
      throw new RangeError(
        `FileDevice.open: ${path} is ${stat.size} bytes, smaller than size ${size} (pass create: true to grow it)`,
      )
    }
    try {
      await handle.truncate(size)
    } catch (error) {
      throw ioError(`FileDevice.open: cannot grow ${path} to ${size} bytes`, error)
    }
  }
  return size
}

/** A block device's size from /sys/dev/block/<major>:<minor>/size (512-byte sectors), if readable. */
async function blockDeviceBytes(rdev: number): Promise<number | undefined> {
  // Linux's new_encode_dev layout, as glibc's major()/minor() decode it.
  const major = (rdev >> 8) & 0xfff
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00)
  try {
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim())
    return Number.isSafeInteger(sectors) && sectors >= 0 ? sectors * 512 : undefined
  } catch {
    return undefined
  }
}

function isNodeError(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code
}

function ioError(message: string, cause: unknown): SnapcowError {
  const code = cause instanceof Error ? (cause as NodeJS.ErrnoException).code : undefined
  return new SnapcowError('SNAPCOW_IO', code ? `${message}: ${code}` : message, { cause })
}
