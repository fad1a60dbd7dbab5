// test/io/file-device.test.ts: FileDevice runs the conformance suite on sparse files in a temp
// dir, plus the sizing and mode rules of FileDevice.open.

import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { SnapcowError } from '../../io/errors.js'
import { FileDevice } from '../../io/file-device.js'
import { blockDeviceSuite } from '../conformance/block-device.js'

let dir = ''
let files = 0
const freshPath = (): string => join(dir, `device-${files++}.img`)

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapcow-file-device-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const hasCode = (code: string) => (e: unknown) => e instanceof SnapcowError && e.code === code

describe('blockDeviceSuite', () => {
  blockDeviceSuite({
    test,
    factory: (size) => FileDevice.open(freshPath(), { create: true, size }),
    reopen: async (device: BlockDevice) => {
      await device.close()
      return FileDevice.open((device as FileDevice).path)
    },
  })
})

describe('FileDevice.open', () => {
  test('creates a sparse file of the given size', async () => {
    const path = freshPath()
    const device = await FileDevice.open(path, { create: true, size: 1 << 20 })
    expect(device.size).toBe(1 << 20)
    expect(device.path).toBe(path)
    expect(device.supports).toEqual({ flush: true, persistent: true })
    await device.close()
    expect((await stat(path)).size).toBe(1 << 20)
  })

  test('a missing file without create rejects with SNAPCOW_IO naming the path', async () => {
    const path = freshPath()
    await expect(FileDevice.open(path)).rejects.toSatisfy(hasCode('SNAPCOW_IO'))
    await expect(FileDevice.open(path, { size: 4096 })).rejects.toThrow(path)
  })

  test('create without size is a TypeError naming the path', async () => {
    const path = freshPath()
    await expect(FileDevice.open(path, { create: true })).rejects.toThrow(
      new TypeError(`FileDevice.open: size is required to create ${path}`),
    )
  })

  test('create with readOnly is a TypeError', async () => {
    await expect(FileDevice.open(freshPath(), { create: true, readOnly: true, size: 4096 })).rejects.toThrow(TypeError)
  })

  test('a size that is not a multiple of 512 is a RangeError naming it', async () => {
    await expect(FileDevice.open(freshPath(), { create: true, size: 1000 })).rejects.toThrow(/1000/)
  })

  test('a file whose size is not a multiple of 512 is a RangeError naming it, unless size is given', async () => {
    const path = freshPath()
    await writeFile(path, new Uint8Array(1000).fill(4))
    await expect(FileDevice.open(path)).rejects.toSatisfy((e) => e instanceof RangeError && e.message.includes('1000'))
    const device = await FileDevice.open(path, { size: 512 }) // a prefix of the file is fine
    const back = new Uint8Array(512)
    await device.read(0, back)
    expect(back).toEqual(new Uint8Array(512).fill(4))
    await device.close()
  })

  test('a size bigger than the file without create is a RangeError naming both sizes', async () => {
    const path = freshPath()
    await writeFile(path, new Uint8Array(4096))
    await expect(FileDevice.open(path, { size: 8192 })).rejects.toSatisfy(
      (e) => e instanceof RangeError && e.message.includes('4096') && e.message.includes('8192'),
    )
    await expect(FileDevice.open(path, { size: 8192, readOnly: true })).rejects.toThrow(RangeError)
    expect((await stat(path)).size).toBe(4096)
  })

  test('create grows a smaller existing file and keeps its data', async () => {
    const path = freshPath()
    await writeFile(path, new Uint8Array(4096).fill(6))
    const device = await FileDevice.open(path, { size: 16384, create: true })
    expect(device.size).toBe(16384)
    const back = new Uint8Array(16384)
    await device.read(0, back)
    expect(back.subarray(0, 4096).every((b) => b === 6)).toBe(true)
    expect(back.subarray(4096).every((b) => b === 0)).toBe(true)
    await device.close()
    expect((await stat(path)).size).toBe(16384)
  })

  test('an existing file takes its own size and keeps its data across reopen', async () => {
    const path = freshPath()
    const first = await FileDevice.open(path, { create: true, size: 8192 })
    await first.write(4096, new Uint8Array(512).fill(8))
    await first.flush()
    await first.close()
    const second = await FileDevice.open(path)
    expect(second.size).toBe(8192)
    const back = new Uint8Array(512)
    await second.read(4096, back)
    expect(back).toEqual(new Uint8Array(512).fill(8))
    await second.close()
  })

  test('readOnly rejects writes with SNAPCOW_READ_ONLY and leaves the file unchanged', async () => {
    const path = freshPath()
    const original = new Uint8Array(4096).fill(2)
    await writeFile(path, original)
    const device = await FileDevice.open(path, { readOnly: true })
    expect(device.readOnly).toBe(true)
    await expect(device.write(0, new Uint8Array(512).fill(9))).rejects.toSatisfy(hasCode('SNAPCOW_READ_ONLY'))
    const back = new Uint8Array(4096)
    await device.read(0, back)
    expect(back).toEqual(original)
    await device.flush()
    await device.close()
    expect(new Uint8Array(await readFile(path))).toEqual(original)
  })

  test('flush (datasync) resolves and the bytes are in the file', async () => {
    const path = freshPath()
    const device = await FileDevice.open(path, { create: true, size: 8192 })
    await device.write(1024, new Uint8Array(1024).fill(0x5a))
    await device.flush()
    const onDisk = new Uint8Array(await readFile(path))
    expect(onDisk.subarray(1024, 2048).every((b) => b === 0x5a)).toBe(true)
    await device.close()
  })

  test('a read past the end of a file that shrank rejects with SNAPCOW_IO naming the offset', async () => {
    const path = freshPath()
    const device = await FileDevice.open(path, { create: true, size: 8192 })
    await writeFile(path, new Uint8Array(4096)) // truncates the file under the open device
    await expect(device.read(2048, new Uint8Array(4096))).rejects.toSatisfy(
      (e) => hasCode('SNAPCOW_IO')(e) && (e as Error).message.includes('4096'),
    )
    await device.close()
  })

  test('a directory is a TypeError', async () => {
    await expect(FileDevice.open(dir, { readOnly: true })).rejects.toThrow(TypeError)
  })

  test('an empty path is a TypeError', async () => {
    await expect(FileDevice.open('')).rejects.toThrow(TypeError)
  })
})

describe('FileDevice.writeFua (forced-unit-access writes for the store\'s metadata)', () => {
  const openFds = async (): Promise<number> => (await import('node:fs/promises')).readdir('/proc/self/fd').then((l) => l.length)

  test('writes through a second O_DSYNC descriptor of the same file, closed with the device', async () => {
    const path = freshPath()
    const before = await openFds()
    const device = await FileDevice.open(path, { create: true, size: 8192 })
    await device.writeFua(4096, new Uint8Array(512).fill(9))
    expect(await openFds()).toBe(before + 2) // its own descriptor and the O_DSYNC one, opened with it
    await device.writeFua(0, new Uint8Array(512).fill(8))
    expect(await openFds()).toBe(before + 2)
    const back = new Uint8Array(512)
    await device.read(4096, back)
    expect(back[0]).toBe(9)
    await device.close()
    expect(await openFds()).toBe(before) // both descriptors gone
    const bytes = await readFile(path)
    expect([bytes[0], bytes[4096]]).toEqual([8, 9])
  })

  test('refuses what write refuses, before any I/O', async () => {
    const path = freshPath()
    const device = await FileDevice.open(path, { create: true, size: 8192 })
    await expect(device.writeFua(100, new Uint8Array(512))).rejects.toThrow(RangeError)
    await expect(device.writeFua(8192, new Uint8Array(512))).rejects.toThrow(/past the end/)
    await device.close()
    const readOnly = await FileDevice.open(path, { readOnly: true })
    await expect(readOnly.writeFua(0, new Uint8Array(512))).rejects.toSatisfy(hasCode('SNAPCOW_READ_ONLY'))
    await readOnly.close()
    await expect(device.writeFua(0, new Uint8Array(512))).rejects.toSatisfy(hasCode('SNAPCOW_DEVICE_CLOSED'))
  })
})
