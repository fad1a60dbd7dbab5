// test/io/memory-device.test.ts: MemoryDevice runs the conformance suite; plus its own size
// rules, copies, and the DeviceBase checks it inherits (error types and codes).

import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { blockDeviceSuite } from '../conformance/block-device.js'

describe('blockDeviceSuite', () => {
  blockDeviceSuite({
    test,
    factory: (size) => new MemoryDevice(size),
    reopen: async (device: BlockDevice) => {
      await device.close()
      return MemoryDevice.from((device as MemoryDevice).snapshotBytes())
    },
  })
})

describe('MemoryDevice', () => {
  test.each([-512, 100, 513, 1.5, NaN, Infinity, 2 ** 53])('size %s is a RangeError naming it', (size) => {
    expect(() => new MemoryDevice(size)).toThrow(RangeError)
    expect(() => new MemoryDevice(size)).toThrow(String(size))
  })

  test('a size beyond the largest Uint8Array (2^40) is a RangeError naming the size and the limit', () => {
    const error = (() => { try { new MemoryDevice(2 ** 40) } catch (e) { return e } })()
    expect(error).toBeInstanceOf(RangeError)
    expect((error as Error).message).toMatch(/^MemoryDevice size 1099511627776 bytes is more than a MemoryDevice can hold \(at most \d+ bytes/)
    expect((error as Error).message).toContain('FileDevice')
  })

  test('size 0 is allowed and only zero-length I/O fits', async () => {
    const device = new MemoryDevice(0)
    await device.read(0, new Uint8Array(0))
    await expect(device.write(0, new Uint8Array(512))).rejects.toThrow(RangeError)
  })

  test('supports flush but not persistence', () => {
    expect(new MemoryDevice(512).supports).toEqual({ flush: true, persistent: false })
  })

  test('from() copies its input and snapshotBytes() returns a copy', async () => {
    const bytes = new Uint8Array(1024).fill(3)
    const device = MemoryDevice.from(bytes)
    bytes.fill(9)
    const image = device.snapshotBytes()
    expect(image).toEqual(new Uint8Array(1024).fill(3))
    image.fill(7)
    expect(device.snapshotBytes()).toEqual(new Uint8Array(1024).fill(3))
  })

  test('from() rejects a length that is not a multiple of 512', () => {
    expect(() => MemoryDevice.from(new Uint8Array(1000))).toThrow(/1000/)
  })

  test('a non-Uint8Array buffer is a TypeError', async () => {
    const device = new MemoryDevice(4096)
    await expect(device.write(0, [1, 2, 3] as unknown as Uint8Array)).rejects.toThrow(TypeError)
    await expect(device.read(0, new ArrayBuffer(512) as unknown as Uint8Array)).rejects.toThrow(TypeError)
  })

  test('an out-of-range request names offset, length and size', async () => {
    const device = new MemoryDevice(4096)
    await expect(device.read(3584, new Uint8Array(1024))).rejects.toThrow(/3584.*1024|1024.*3584/)
    await expect(device.read(3584, new Uint8Array(1024))).rejects.toThrow(/4096/)
  })

  test('a misaligned offset says so', async () => {
    await expect(new MemoryDevice(4096).write(513, new Uint8Array(512))).rejects.toThrow('offset 513 is not a multiple of 512')
  })

  test('I/O after close rejects with SNAPCOW_DEVICE_CLOSED', async () => {
    const device = new MemoryDevice(4096)
    await device.close()
    for (const io of [() => device.read(0, new Uint8Array(512)), () => device.write(0, new Uint8Array(512)), () => device.flush()]) {
      await expect(io()).rejects.toSatisfy((e) => e instanceof SnapcowError && e.code === 'SNAPCOW_DEVICE_CLOSED')
    }
  })

  test('a read-only device rejects writes with SNAPCOW_READ_ONLY and keeps its bytes', async () => {
    const device = MemoryDevice.from(new Uint8Array(1024).fill(5), { readOnly: true })
    expect(device.readOnly).toBe(true)
    await expect(device.write(0, new Uint8Array(512))).rejects.toSatisfy(
      (e) => e instanceof SnapcowError && e.code === 'SNAPCOW_READ_ONLY',
    )
    expect(device.snapshotBytes()).toEqual(new Uint8Array(1024).fill(5))
  })
})
