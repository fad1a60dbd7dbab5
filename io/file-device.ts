// io/file-device.ts: a block device on a regular file or a Linux block device (api.md
// "Devices"), through one FileHandle with positional I/O. `open()` owns the sizing rules;
// reads and writes loop until the whole buffer is done, so short transfers never leak out.

import { open as openHandle, readFile, type FileHandle } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import type { ByteOffset } from './units.js'
import { checkDeviceSize, DeviceBase } from './device-base.js'
import { SnapcowError } from './errors.js'

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
}

/**
 * A block device on a file or block device path; survives close and reopen.
 * `flush()` is `fdatasync`.
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

  private constructor(path: string, handle: FileHandle, size: number, readOnly: boolean) {
    super(size, { flush: true, persistent: true }, { readOnly })
    this.path = path
    this.#handle = handle
  }

  /**
   * Opens (or creates) a file-backed device. An existing file gives its own size unless `size`
   * is passed (the file must be at least that big, or `create` grows it); a missing file needs
   * `create: true` and `size`; a block device without `size` is sized from sysfs.
   * @example
   * const dev = await FileDevice.open('/tmp/origin.img', { readOnly: true })
   */
  static async open(path: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const { size, create = false, readOnly = false } = options
    if (typeof path !== 'string' || path === '') throw new TypeError('FileDevice.open: path must be a non-empty string')
    if (create && readOnly) throw new TypeError(`FileDevice.open: create and readOnly cannot be combined (${path})`)
    if (size !== undefined) checkDeviceSize(size, 'FileDevice.open: size')

    let handle: FileHandle
    try {
      handle = await openHandle(path, readOnly ? 'r' : 'r+')
    } catch (error) {
      if (!isNodeError(error, 'ENOENT')) throw ioError(`FileDevice.open: cannot open ${path}`, error)
      if (!create) {
        throw new SnapcowError('SNAPCOW_IO', `FileDevice.open: ${path} does not exist (pass create: true and a size)`, {
          cause: error,
        })
      }
      if (size === undefined) throw new TypeError(`FileDevice.open: size is required to create ${path}`)
      return FileDevice.#create(path, size)
    }

    try {
      const deviceSize = await sizeOf(path, handle, await handle.stat(), size, create && !readOnly)
      return new FileDevice(path, handle, deviceSize, readOnly)
    } catch (error) {
      await handle.close()
      throw error
    }
  }

  static async #create(path: string, size: number): Promise<FileDevice> {
    let handle: FileHandle
    try {
      handle = await openHandle(path, 'wx+') // exclusive: never clobber a file that appeared meanwhile
    } catch (error) {
      throw ioError(`FileDevice.open: cannot create ${path}`, error)
    }
    try {
      await handle.truncate(size) // sparse: no data blocks until written
      return new FileDevice(path, handle, size, false)
    } catch (error) {
      await handle.close()
      throw ioError(`FileDevice.open: cannot size ${path} to ${size} bytes`, error)
    }
  }

  protected override async _read(offset: ByteOffset, into: Uint8Array): Promise<void> {
    let done = 0
    while (done < into.length) {
      let bytesRead: number
      try {
        ;({ bytesRead } = await this.#handle.read(into, done, into.length - done, offset + done))
      } catch (error) {
        throw ioError(`${this.path}: read failed at offset ${offset + done}`, error)
      }
      // End of file inside the device: the file shrank under us. Never hand back short data.
      if (bytesRead === 0) {
        throw new SnapcowError('SNAPCOW_IO', `${this.path}: unexpected end of file at offset ${offset + done}`)
      }
      done += bytesRead
    }
  }

  protected override async _write(offset: ByteOffset, data: Uint8Array): Promise<void> {
    let done = 0
    while (done < data.length) {
      try {
        const { bytesWritten } = await this.#handle.write(data, done, data.length - done, offset + done)
        done += bytesWritten
      } catch (error) {
        throw ioError(`${this.path}: write failed at offset ${offset + done}`, error)
      }
    }
  }

  protected override async _flush(): Promise<void> {
    try {
      await this.#handle.datasync()
    } catch (error) {
      throw ioError(`${this.path}: flush failed`, error)
    }
  }

  protected override async _close(): Promise<void> {
    await this.#handle.close()
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
  if (!stat.isFile()) throw new TypeError(`FileDevice.open: ${path} is not a regular file or block device`)
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
