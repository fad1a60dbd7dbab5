// Fuzzing the loader (spec §9.6): random corruption of header bytes and records, truncated
// devices, records pointing past the device or at metadata chunks, duplicates. Every load
// either succeeds with a consistent table or refuses with a typed error; none writes.
import fc from 'fast-check'
import { expect, test } from 'vitest'
import { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { PersistentStore } from '../../io/cow-format/persistent-store.js'
import { readCowStore } from '../../io/cow-format/read-cow-store.js'
import { asChunkSectors, asOldChunk } from '../../io/units.js'
import { RecordingDevice } from '../support/recording-device.js'

const interestingChunk = (deviceChunks: number, stride: number) => fc.oneof(
  fc.constantFrom(0n, 1n, 2n, BigInt(deviceChunks - 1), BigInt(deviceChunks), BigInt(1 + stride), 2n ** 53n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: BigInt(deviceChunks + 4) }),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
)

type Mutation =
  | { kind: 'header-byte'; at: number; value: number }
  | { kind: 'header-field'; at: 0 | 4 | 8 | 12; value: number }
  | { kind: 'record'; area: number; slot: number; field: 0 | 8; value: bigint }
  | { kind: 'copy-record'; area: number; from: number; to: number; field: 'old' | 'new' | 'both' }
  | { kind: 'truncate'; sectors: number }
  | { kind: 'zero-magic' }

const scenario = fc.record({
  chunkSectors: fc.constantFrom(1, 2, 8),
  records: fc.nat({ max: 80 }),
  slack: fc.nat({ max: 40 }),
}).chain((base) => {
  const chunkBytes = base.chunkSectors * 512
  const stride = chunkBytes / 16 + 1
  const deviceChunks = 2 + base.records + Math.ceil(base.records / (stride - 1)) + base.slack + 1
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ kind: fc.constant('header-byte' as const), at: fc.nat({ max: 15 }), value: fc.nat({ max: 255 }) }),
    fc.record({ kind: fc.constant('header-field' as const), at: fc.constantFrom(0 as const, 4 as const, 8 as const, 12 as const),
      value: fc.oneof(fc.constantFrom(0, 1, 2, 8, 0x70416e53, 2 ** 21, 2 ** 22, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 })) }),
    fc.record({ kind: fc.constant('record' as const), area: fc.nat({ max: 3 }), slot: fc.nat({ max: stride - 2 }),
      field: fc.constantFrom(0 as const, 8 as const), value: interestingChunk(deviceChunks, stride) }),
    fc.record({ kind: fc.constant('copy-record' as const), area: fc.nat({ max: 3 }), from: fc.nat({ max: stride - 2 }), to: fc.nat({ max: stride - 2 }),
      field: fc.constantFrom('old' as const, 'new' as const, 'both' as const) }),
    fc.record({ kind: fc.constant('truncate' as const), sectors: fc.nat({ max: deviceChunks * base.chunkSectors }) }),
    fc.constant({ kind: 'zero-magic' as const }), // "no store yet" is four zero bytes: too rare by chance
  )
  return fc.record({
    ...Object.fromEntries(Object.entries(base).map(([k, v]) => [k, fc.constant(v)])) as { chunkSectors: fc.Arbitrary<number>; records: fc.Arbitrary<number>; slack: fc.Arbitrary<number> },
    deviceChunks: fc.constant(deviceChunks),
    mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }),
  })
})

async function buildImage(chunkSectors: number, records: number, deviceChunks: number): Promise<Uint8Array> {
  const device = new MemoryDevice(deviceChunks * chunkSectors * 512)
  const store = await PersistentStore.create(device, asChunkSectors(chunkSectors))
  const commits: Array<Promise<boolean>> = []
  for (let i = 0; i < records; i++) commits.push(store.commit(asOldChunk(1000 + 3 * i), store.allocate()!, true))
  await Promise.all(commits)
  return device.snapshotBytes()
}

function mutate(image: Uint8Array, chunkSectors: number, mutations: Mutation[]): Uint8Array {
  const chunkBytes = chunkSectors * 512
  const stride = chunkBytes / 16 + 1
  let bytes = image.slice()
  const view = () => new DataView(bytes.buffer)
  const recordAt = (area: number, slot: number) => (1 + area * stride) * chunkBytes + slot * 16
  for (const m of mutations) {
    if (m.kind === 'header-byte') bytes[m.at] = m.value
    if (m.kind === 'header-field' && bytes.length >= 16) view().setUint32(m.at, m.value, true)
    if (m.kind === 'record' && recordAt(m.area, m.slot) + 16 <= bytes.length) {
      view().setBigUint64(recordAt(m.area, m.slot) + m.field, m.value, true)
    }
    if (m.kind === 'copy-record' && recordAt(m.area, Math.max(m.from, m.to)) + 16 <= bytes.length) {
      const [start, length] = m.field === 'old' ? [0, 8] : m.field === 'new' ? [8, 8] : [0, 16]
      const from = recordAt(m.area, m.from) + start
      bytes.copyWithin(recordAt(m.area, m.to) + start, from, from + length)
    }
    if (m.kind === 'zero-magic') bytes.fill(0, 0, Math.min(4, bytes.length))
    if (m.kind === 'truncate') bytes = bytes.slice(0, Math.min(bytes.length, m.sectors * 512))
  }
  return bytes
}

/** What a correct load must report, computed straight from the bytes (no snapcow code). */
function expectConsistent(bytes: Uint8Array, info: Awaited<ReturnType<typeof readCowStore>>): void {
  const view = new DataView(bytes.buffer)
  expect(view.getUint32(0, true)).toBe(0x70416e53)
  expect(view.getUint32(8, true)).toBe(1)
  expect(info.chunkSectors).toBe(view.getUint32(12, true))
  expect(info.valid).toBe(view.getUint32(4, true) !== 0)
  const chunkBytes = info.chunkSectors * 512
  const stride = chunkBytes / 16 + 1
  const deviceChunks = Math.floor(bytes.length / chunkBytes)
  const isMeta = (c: number) => c === 0 || c % stride === 1
  const olds = new Set(info.exceptions.map(([o]) => o))
  const news = new Set(info.exceptions.map(([, n]) => n))
  expect(olds.size).toBe(info.exceptions.length)
  expect(news.size).toBe(info.exceptions.length)
  for (const [, n] of info.exceptions) {
    expect(isMeta(n)).toBe(false)
    expect(n).toBeLessThan(deviceChunks)
  }
  if (!info.valid) return
  let max = 1
  for (const [, n] of info.exceptions) max = Math.max(max, n)
  const next = max + 1
  expect(info.nextFreeChunk).toBe(next % stride === 1 ? next + 1 : next)
  // the table is exactly the records up to the first new_chunk 0
  const table: Array<[number, number]> = []
  walk: for (let area = 0; ; area++) {
    for (let slot = 0; slot < stride - 1; slot++) {
      const at = (1 + area * stride) * chunkBytes + slot * 16
      const n = view.getBigUint64(at + 8, true)
      if (n === 0n) { expect(info.metadataAreas).toBe(area + 1); break walk }
      table.push([Number(view.getBigUint64(at, true)), Number(n)])
    }
  }
  expect(info.exceptions).toEqual(table)
}

test('fuzzed stores load consistently or refuse with a typed error, and never write', async () => {
  const seen = new Map<string, number>()
  const runs = Number(process.env.SNAPCOW_FUZZ_RUNS ?? 400)
  await fc.assert(fc.asyncProperty(scenario, async (s) => {
    const bytes = mutate(await buildImage(s.chunkSectors, s.records, s.deviceChunks), s.chunkSectors, s.mutations)
    const cow = new RecordingDevice(MemoryDevice.from(bytes))
    let outcome: string
    try {
      expectConsistent(bytes, await readCowStore(cow))
      outcome = 'loaded'
    } catch (error) {
      if (!(error instanceof SnapcowError)) throw error // a crash or a failed check, not a refusal
      outcome = error.code
    }
    expect(cow.writes()).toEqual([])
    seen.set(outcome, (seen.get(outcome) ?? 0) + 1)
  }), { numRuns: runs }) // on failure fast-check prints the seed, path and shrunk counterexample
  // The corruptions must reach both sides: loads that pass and each kind of refusal.
  expect(seen.get('loaded') ?? 0).toBeGreaterThan(runs / 20)
  for (const code of ['SNAPCOW_BAD_MAGIC', 'SNAPCOW_NO_STORE', 'SNAPCOW_BAD_VERSION', 'SNAPCOW_BAD_CHUNK_SIZE',
    'SNAPCOW_COW_TOO_SMALL', 'SNAPCOW_CORRUPT_TABLE']) expect(seen.get(code) ?? 0, code).toBeGreaterThan(0)
})
