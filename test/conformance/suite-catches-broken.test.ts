// test/conformance/suite-catches-broken.test.ts: the conformance suite passes a correct device
// and fails each deliberately broken one (broken-adapters.ts) in the tests named for its bug.

import { describe, expect, test } from 'vitest'
import type { BlockDevice } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { blockDeviceSuite, type BlockDeviceSuiteOptions } from './block-device.js'
import * as broken from './broken-adapters.js'

type Setup = Omit<BlockDeviceSuiteOptions, 'test'>

/** Registers the suite with a collecting `test`, runs every test, and returns name -> failure (or undefined). */
async function runSuite(setup: Setup): Promise<Map<string, string | undefined>> {
  const tests: Array<[string, () => Promise<void>]> = []
  blockDeviceSuite({ ...setup, test: (name, fn) => void tests.push([name, fn]) })
  const results = new Map<string, string | undefined>()
  for (const [name, fn] of tests) {
    expect(results.has(name), `duplicate test name: ${name}`).toBe(false)
    results.set(name, await fn().then(
      () => undefined,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    ))
  }
  return results
}

const failures = (results: Map<string, string | undefined>): string[] =>
  [...results].filter(([, failure]) => failure !== undefined).map(([name]) => name)

async function reopenMemory(device: BlockDevice): Promise<BlockDevice> {
  await device.close()
  return MemoryDevice.from((device as MemoryDevice).snapshotBytes())
}

const OFFSETS = [
  'each write lands at its own offset and reads back from it',
  'a multi-sector read sees each sector written separately at its own offset',
]
const LARGE_READ = 'a large read returns every byte'
const MISALIGNED = [
  'writes at misaligned offsets reject with a RangeError naming the offset and write nothing',
  'reads at misaligned offsets reject with a RangeError naming the offset and fill nothing',
  'writes of misaligned lengths reject with a RangeError naming the length and write nothing',
  'reads of misaligned lengths reject with a RangeError naming the length and fill nothing',
]
const OUT_OF_RANGE = [
  'writes past the end reject with a RangeError naming the offset and write nothing',
  'reads past the end reject with a RangeError naming the offset and fill nothing',
]
const REOPEN = [
  'data written, flushed and closed survives reopen',
  'a reopened device takes writes that survive the next reopen',
]

describe('a correct MemoryDevice passes every test', () => {
  test.each([
    ['with reopen', { factory: (size: number) => new MemoryDevice(size), reopen: reopenMemory }],
    ['without reopen', { factory: (size: number) => new MemoryDevice(size) }],
    ['at 16 KiB', { factory: (size: number) => new MemoryDevice(size), reopen: reopenMemory, size: 16384 }],
  ] as Array<[string, Setup]>)('%s', async (_, setup) => {
    const results = await runSuite(setup)
    expect(results.size).toBeGreaterThan(15)
    expect(Object.fromEntries([...results].filter(([, f]) => f !== undefined))).toEqual({})
  })
})

// [adapter, setup, tests it must fail, whether those are all it fails]
const cases: Array<[string, Setup, string[], 'exactly' | 'at least']> = [
  ['IgnoresOffset (read)', { factory: (size) => new broken.IgnoresOffset(size, 'read') }, OFFSETS, 'at least'],
  ['IgnoresOffset (write)', { factory: (size) => new broken.IgnoresOffset(size, 'write') }, OFFSETS, 'at least'],
  ['IgnoresOffset (both)', { factory: (size) => new broken.IgnoresOffset(size, 'both') }, OFFSETS, 'at least'],
  ['ReadsShort (512 B)', { factory: (size) => new broken.ReadsShort(size, 512) }, [LARGE_READ, ...OFFSETS], 'at least'],
  ['ReadsShort (64 KiB)', { factory: (size) => new broken.ReadsShort(size, 65536) }, [LARGE_READ], 'at least'],
  ['IgnoresByteOffset', { factory: (size) => new broken.IgnoresByteOffset(size) },
    ['a write from a subarray writes only the view'], 'exactly'],
  ['KeepsCallerBuffer', { factory: (size) => new broken.KeepsCallerBuffer(size) },
    ['changing the source buffer after write resolves does not change the device'], 'exactly'],
  ['AcceptsMisaligned', { factory: (size) => new broken.AcceptsMisaligned(size) }, MISALIGNED, 'exactly'],
  ['AcceptsOutOfRange', { factory: (size) => new broken.AcceptsOutOfRange(size) }, OUT_OF_RANGE, 'exactly'],
  ['LosesDataOnReopen',
    { factory: (size) => new broken.LosesDataOnReopen(new Uint8Array(size)), reopen: broken.LosesDataOnReopen.reopen },
    REOPEN, 'exactly'],
  ['MemoryDevice whose reopen returns fresh storage',
    { factory: (size) => new MemoryDevice(size), reopen: async (d) => (await d.close(), new MemoryDevice(d.size)) },
    REOPEN, 'exactly'],
  ['LosesDataOnReopen run without reopen', { factory: (size) => new broken.LosesDataOnReopen(new Uint8Array(size)) },
    ['a persistent device is tested with reopen'], 'exactly'],
]

describe('each broken adapter fails the tests for its bug', () => {
  test.each(cases)('%s', async (_, setup, mustFail, mode) => {
    const results = await runSuite(setup)
    for (const name of mustFail) expect([...results.keys()]).toContain(name) // a renamed test must not pass silently
    if (mode === 'exactly') expect(failures(results).sort()).toEqual([...mustFail].sort())
    else expect(failures(results)).toEqual(expect.arrayContaining(mustFail))
  })
})
