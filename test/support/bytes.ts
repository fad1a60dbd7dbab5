// test/support/bytes.ts: position-dependent test data and byte comparisons for volume tests.
// Each 512-byte sector of `pattern(offset, length, seed)` depends on its own device offset and
// the seed, so data read from the wrong place or the wrong generation never matches by chance.
import type { BlockDevice } from '../../io/block-device.js'

/** Bytes that belong at `offset` only (and to `seed` only). */
export function pattern(offset: number, length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length)
  for (let start = 0; start < length; start += 512) {
    let x = (Math.imul(Math.floor((offset + start) / 512) + 1, 0x9e3779b1) ^ Math.imul(seed, 0x85ebca6b)) | 1
    for (let i = start; i < Math.min(start + 512, length); i++) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      out[i] = x & 0xff
    }
  }
  return out
}

/** Reads `length` bytes at `offset` into a fresh buffer. */
export async function readAt(device: BlockDevice, offset: number, length: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(length).fill(0xa5)
  await device.read(offset, buffer)
  return buffer
}

/** The first differing byte as a short message, or undefined when equal (no giant diffs). */
export function firstDifference(actual: Uint8Array, expected: Uint8Array, base = 0): string | undefined {
  if (actual.length !== expected.length) return `length ${actual.length}, expected ${expected.length}`
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) return `byte at offset ${base + i}: got ${actual[i]}, expected ${expected[i]}`
  }
  return undefined
}
