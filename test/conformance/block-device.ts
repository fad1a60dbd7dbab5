// test/conformance/block-device.ts: the conformance suite every BlockDevice runs (style.md
// "Tests"; api.md "Devices"), shaped like abstract-level's published suite. It imports only
// node:assert, so any runner can drive it. Data is position-dependent (each sector's bytes are
// seeded by its own offset), so a read or write at the wrong place never passes by chance.

import assert from 'node:assert/strict'
import type { BlockDevice } from '../../io/block-device.js'

/**
 * Registers one named async test with the caller's runner (vitest's `test`, node:test's `test`, …).
 * @example
 * const collected: SuiteTest = (name, fn) => void queue.push({ name, fn })
 */
export type SuiteTest = (name: string, fn: () => Promise<void>) => void

/**
 * Options for {@link blockDeviceSuite}.
 * @example
 * const options: BlockDeviceSuiteOptions = {
 *   test,
 *   factory: (size) => FileDevice.open(join(dir, `${size}-${n++}.img`), { create: true, size }),
 *   reopen: async (dev) => (await dev.close(), FileDevice.open((dev as FileDevice).path)),
 * }
 */
export interface BlockDeviceSuiteOptions {
  /** The runner's test function. */
  test: SuiteTest
  /** A fresh, zero-filled, writable device of exactly `size` bytes. */
  factory: (size: number) => BlockDevice | Promise<BlockDevice>
  /** Closes `device` and opens the same storage again; enables the persistence tests. */
  reopen?: (device: BlockDevice) => Promise<BlockDevice>
  /** Size of most test devices in bytes: a multiple of 512, at least 16 KiB. Default 1 MiB. */
  size?: number
}

const SECTOR = 512
const SENTINEL = 0xa5 // read buffers start full of this, so bytes a read never filled show up

/**
 * Registers the BlockDevice conformance tests with `test`. Every test opens its own device with
 * `factory` and closes it at the end.
 * @example
 * import { test } from 'vitest'
 * import { blockDeviceSuite } from 'snapcow/test-suite'
 * blockDeviceSuite({ test, factory: (size) => new MemoryDevice(size) })
 */
export function blockDeviceSuite(options: BlockDeviceSuiteOptions): void {
  const { test, factory, reopen, size = 1 << 20 } = options
  if (!Number.isSafeInteger(size) || size % SECTOR !== 0 || size < 16384) {
    throw new RangeError(`blockDeviceSuite: size ${size} must be a multiple of 512 and at least 16384`)
  }
  const mid = alignDown(size / 2)
  const last = size - SECTOR

  /** Runs `fn` on a fresh device and always closes it. */
  async function withDevice(fn: (device: BlockDevice) => Promise<void>, bytes = size): Promise<void> {
    const device = await factory(bytes)
    try {
      await fn(device)
    } catch (error) {
      await device.close().catch(() => {})
      throw error
    }
    await device.close()
  }

  test('size is the size asked for', async () => {
    await withDevice(async (device) => assert.equal(device.size, size, 'device.size'))
    await withDevice(async (device) => assert.equal(device.size, 8192, 'device.size'), 8192)
  })

  test('a fresh device reads as zeros', async () => {
    await withDevice(async (device) => assertZeros(await readAt(device, 0, size), 0, 'fresh device'))
  })

  test('each write lands at its own offset and reads back from it', async () => {
    await withDevice(async (device) => {
      const image = new Uint8Array(size)
      for (const [offset, length] of [[0, 512], [512, 512], [4096, 1024], [mid, 2048], [last, 512]] as const) {
        const data = pattern(offset, length)
        await device.write(offset, data)
        image.set(data, offset)
      }
      for (const [offset, length] of [[0, 512], [512, 512], [4096, 1024], [mid, 2048], [last, 512], [1024, 3072]] as const) {
        assertBytes(await readAt(device, offset, length), image.subarray(offset, offset + length), offset)
      }
      assertBytes(await readAt(device, 0, size), image, 0)
    })
  })

  test('a multi-sector read sees each sector written separately at its own offset', async () => {
    await withDevice(async (device) => {
      const start = 8192
      for (let offset = start; offset < start + 4096; offset += SECTOR) await device.write(offset, pattern(offset, SECTOR))
      assertBytes(await readAt(device, start, 4096), pattern(start, 4096), start)
      assertBytes(await readAt(device, start + 1024, 2048), pattern(start + 1024, 2048), start + 1024)
    })
  })

  test('a large read returns every byte', async () => {
    await withDevice(async (device) => {
      const length = Math.min(256 << 10, alignDown(size - SECTOR))
      const data = pattern(SECTOR, length, 3)
      await device.write(SECTOR, data)
      assertBytes(await readAt(device, SECTOR, length), data, SECTOR)
    })
  })

  test('a write from a subarray writes only the view', async () => {
    await withDevice(async (device) => {
      const backing = pattern(0, 1024 + 14, 99) // junk around the view, at an odd byteOffset
      const view = backing.subarray(7, 7 + 1024)
      view.set(pattern(4096, 1024))
      await device.write(4096, view)
      const back = await readAt(device, 3584, 2048)
      assertZeros(back.subarray(0, 512), 3584, 'before the write')
      assertBytes(back.subarray(512, 1536), pattern(4096, 1024), 4096)
      assertZeros(back.subarray(1536), 5120, 'after the write')
    })
  })

  test('a read into a subarray fills only the view', async () => {
    await withDevice(async (device) => {
      await device.write(8192, pattern(8192, 1024))
      const backing = new Uint8Array(1024 + 14).fill(SENTINEL)
      await device.read(8192, backing.subarray(7, 7 + 1024))
      assertBytes(backing.subarray(7, 7 + 1024), pattern(8192, 1024), 8192)
      assert.ok(backing.subarray(0, 7).every((b) => b === SENTINEL), 'bytes before the view were changed')
      assert.ok(backing.subarray(7 + 1024).every((b) => b === SENTINEL), 'bytes after the view were changed')
    })
  })

  test('changing the source buffer after write resolves does not change the device', async () => {
    await withDevice(async (device) => {
      const data = pattern(mid, 1024)
      await device.write(mid, data)
      data.fill(0xee)
      assertBytes(await readAt(device, mid, 1024), pattern(mid, 1024), mid)
    })
  })

  test('concurrent writes to distinct offsets all land', async () => {
    await withDevice(async (device) => {
      const count = Math.min(64, size / 2048)
      const offsets = Array.from({ length: count }, (_, i) => alignDown((i * size) / count))
      await Promise.all(offsets.map((offset) => device.write(offset, pattern(offset, 1024, 5))))
      const reads = await Promise.all(offsets.map((offset) => readAt(device, offset, 1024)))
      reads.forEach((back, i) => assertBytes(back, pattern(offsets[i] ?? 0, 1024, 5), offsets[i] ?? 0))
    })
  })

  test('zero-length reads and writes resolve and change nothing', async () => {
    await withDevice(async (device) => {
      await device.write(0, pattern(0, 512))
      await device.write(last, pattern(last, 512))
      for (const offset of [0, 512, mid, size]) {
        await device.write(offset, new Uint8Array(0))
        await device.read(offset, new Uint8Array(0))
      }
      assertBytes(await readAt(device, 0, 1024), concat(pattern(0, 512), new Uint8Array(512)), 0)
      assertBytes(await readAt(device, last, 512), pattern(last, 512), last)
    })
  })

  const badOffsets = [1, 511, 513, 1.5, -512, NaN, Infinity]
  const badLengths = [1, 100, 511, 513, 1000]

  test('writes at misaligned offsets reject with a RangeError naming the offset and write nothing', async () => {
    await withDevice(async (device) => {
      for (const offset of badOffsets) {
        await rejectsWithRangeError(`write(${offset}, 512 bytes)`, () => device.write(offset, pattern(0, 512, 7)), offset)
      }
      assertZeros(await readAt(device, 0, size), 0, 'after rejected writes')
    })
  })

  test('reads at misaligned offsets reject with a RangeError naming the offset and fill nothing', async () => {
    await withDevice(async (device) => {
      await device.write(0, pattern(0, 2048))
      for (const offset of badOffsets) {
        const buffer = new Uint8Array(512).fill(SENTINEL)
        await rejectsWithRangeError(`read(${offset}, 512 bytes)`, () => device.read(offset, buffer), offset)
        assertUntouched(buffer, `read(${offset})`)
      }
    })
  })

  test('writes of misaligned lengths reject with a RangeError naming the length and write nothing', async () => {
    await withDevice(async (device) => {
      for (const offset of [0, 4096]) {
        for (const length of badLengths) {
          const run = () => device.write(offset, pattern(offset, length, 7))
          await rejectsWithRangeError(`write(${offset}, ${length} bytes)`, run, length)
        }
      }
      assertZeros(await readAt(device, 0, size), 0, 'after rejected writes')
    })
  })

  test('reads of misaligned lengths reject with a RangeError naming the length and fill nothing', async () => {
    await withDevice(async (device) => {
      await device.write(0, pattern(0, 8192))
      for (const length of badLengths) {
        const buffer = new Uint8Array(length).fill(SENTINEL)
        await rejectsWithRangeError(`read(4096, ${length} bytes)`, () => device.read(4096, buffer), length)
        assertUntouched(buffer, `read(4096, ${length} bytes)`)
      }
    })
  })

  // [offset, length]: starting at the end, straddling it, and far past it.
  const outOfRange = (): Array<readonly [number, number]> => [
    [size, 512],
    [last, 1024],
    [size - 4096, 8192],
    [size + 512, 512],
    [2 ** 52, 512],
  ]

  test('writes past the end reject with a RangeError naming the offset and write nothing', async () => {
    await withDevice(async (device) => {
      for (const [offset, length] of outOfRange()) {
        const run = () => device.write(offset, pattern(offset, length, 7))
        await rejectsWithRangeError(`write(${offset}, ${length} bytes) on a ${size}-byte device`, run, offset)
      }
      // A clipping adapter would have written the in-range part of the straddling requests.
      assertZeros(await readAt(device, 0, size), 0, 'after rejected writes')
    })
  })

  test('reads past the end reject with a RangeError naming the offset and fill nothing', async () => {
    await withDevice(async (device) => {
      await device.write(size - 8192, pattern(size - 8192, 8192))
      for (const [offset, length] of outOfRange()) {
        const buffer = new Uint8Array(length).fill(SENTINEL)
        await rejectsWithRangeError(`read(${offset}, ${length} bytes) on a ${size}-byte device`, () => device.read(offset, buffer), offset)
        assertUntouched(buffer, `read(${offset}, ${length} bytes)`)
      }
    })
  })

  test('flush resolves and the data stays readable', async () => {
    await withDevice(async (device) => {
      await device.write(mid, pattern(mid, 4096))
      await device.flush()
      assertBytes(await readAt(device, mid, 4096), pattern(mid, 4096), mid)
    })
  })

  test('I/O after close rejects', async () => {
    const device = await factory(size)
    await device.close()
    await rejects('read after close', () => device.read(0, new Uint8Array(512)))
    await rejects('write after close', () => device.write(0, pattern(0, 512)))
    await rejects('flush after close', () => device.flush())
  })

  test('closing twice is harmless', async () => {
    const device = await factory(size)
    await device.close()
    await device.close()
    await Promise.all([device.close(), device.close()])
  })

  if (!reopen) {
    // Gated by supports: a device that claims persistence must be given a way to reopen it.
    test('a persistent device is tested with reopen', async () => {
      await withDevice(async (device) => {
        const persistent = device.supports?.persistent === true
        assert.ok(!persistent, 'device.supports.persistent is true: pass reopen to blockDeviceSuite')
      })
    })
  } else {
    test('data written, flushed and closed survives reopen', async () => {
      let device = await factory(size)
      try {
        const image = new Uint8Array(size)
        for (const [offset, length] of [[0, 4096], [mid, 1024], [size - 2048, 2048]] as const) {
          image.set(pattern(offset, length, 11), offset)
          await device.write(offset, pattern(offset, length, 11))
        }
        await device.flush()
        device = await reopen(device)
        assert.equal(device.size, size, 'size after reopen')
        assertBytes(await readAt(device, 0, size), image, 0)
      } finally {
        await device.close()
      }
    })

    test('a reopened device takes writes that survive the next reopen', async () => {
      let device = await factory(size)
      try {
        await device.write(0, pattern(0, 512, 13))
        await device.flush()
        device = await reopen(device)
        await device.write(4096, pattern(4096, 512, 13))
        await device.flush()
        device = await reopen(device)
        assertBytes(await readAt(device, 0, 512), pattern(0, 512, 13), 0)
        assertBytes(await readAt(device, 4096, 512), pattern(4096, 512, 13), 4096)
        assertZeros(await readAt(device, 512, 3584), 512, 'between the writes')
      } finally {
        await device.close()
      }
    })
  }
}

/**
 * Bytes that could only belong at `offset`: each 512-byte sector comes from an xorshift stream
 * seeded by that sector's position and `seed`, so data from another offset never matches.
 */
function pattern(offset: number, length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length)
  for (let start = 0; start < length; start += SECTOR) {
    let x = (Math.imul(Math.floor((offset + start) / SECTOR) + 1, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) | 1
    for (let i = start; i < Math.min(start + SECTOR, length); i++) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      out[i] = x & 0xff
    }
  }
  return out
}

const alignDown = (n: number): number => Math.floor(n / SECTOR) * SECTOR

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

/** Reads into a sentinel-filled buffer, so a short read cannot pass as zeros. */
async function readAt(device: BlockDevice, offset: number, length: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(length).fill(SENTINEL)
  await device.read(offset, buffer)
  return buffer
}

/** Compares every byte, reporting the first difference by device offset (no giant diffs). */
function assertBytes(actual: Uint8Array, expected: Uint8Array, offset: number): void {
  assert.equal(actual.length, expected.length, `length of the read at offset ${offset}`)
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      const hint = actual[i] === SENTINEL ? ' (never filled by the read?)' : ''
      assert.fail(`byte at device offset ${offset + i}: got ${actual[i]}, expected ${expected[i]}${hint}`)
    }
  }
}

function assertZeros(actual: Uint8Array, offset: number, what: string): void {
  const i = actual.findIndex((b) => b !== 0)
  if (i !== -1) assert.fail(`${what}: byte at device offset ${offset + i} is ${actual[i]}, expected 0`)
}

function assertUntouched(buffer: Uint8Array, what: string): void {
  const i = buffer.findIndex((b) => b !== SENTINEL)
  if (i !== -1) assert.fail(`${what} rejected but changed byte ${i} of the caller's buffer`)
}

/** The rejection of `run()`; fails if it throws synchronously or resolves. */
async function rejects(what: string, run: () => Promise<unknown>): Promise<unknown> {
  let promise: Promise<unknown>
  try {
    promise = run()
  } catch (error) {
    assert.fail(`${what} threw synchronously (${show(error)}); it must return a rejected promise`)
  }
  try {
    await promise
  } catch (error) {
    assert.ok(error instanceof Error, `${what} rejected with a non-Error: ${show(error)}`)
    return error
  }
  assert.fail(`${what} resolved; expected it to reject`)
}

async function rejectsWithRangeError(what: string, run: () => Promise<unknown>, value: number): Promise<void> {
  const error = await rejects(what, run)
  assert.ok(error instanceof RangeError, `${what}: expected a RangeError, got ${show(error)}`)
  // The value as its own token: 1 must not match inside 512, nor 1.5 inside 11.5.
  const token = String(value).replace(/[.+]/g, '\\$&')
  assert.match(error.message, new RegExp(`(?<![\\d.])${token}(?!\\.?\\d)`), `${what}: message does not name ${value}`)
}

function show(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}
