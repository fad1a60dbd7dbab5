// test/fuzz/stores.property.test.ts: hostile COW stores (issue item 3). Kernel-made and
// snapcow-made stores, mutated, go through origin.loadSnapshot and `snapcow check`: each either
// loads with a consistent table or is refused with a documented SnapcowError, exactly as an
// independent reading of the bytes (store-judge.ts) says, and nothing is ever written.
// Sizes: SNAPCOW_FUZZ_STORES (default 1000 here, 10000 in `npm run test:fuzz`) and
// SNAPCOW_FUZZ_CLI (processes: 12 / 200); SNAPCOW_FUZZ_SEED replays a printed seed.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { beforeAll, expect, test } from 'vitest'
import { openOrigin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import { CowFormatError, SnapcowError } from '../../io/errors.js'
import { RecordingDevice } from '../support/recording-device.js'
import type { BaseStore } from './store-bases.js'
import { baseStores, BytesDevice, prefixDevice } from './store-bases.js'
import type { Verdict } from './store-judge.js'
import { judgeStore } from './store-judge.js'
import type { Mutation } from './store-mutations.js'
import { applyMutations, mutation } from './store-mutations.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const STORES = Number(process.env.SNAPCOW_FUZZ_STORES ?? 1000)
const CLI_RUNS = Number(process.env.SNAPCOW_FUZZ_CLI ?? 12)
const SEED = Number(process.env.SNAPCOW_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const BIN = path.resolve(here, '../../dist/cli.js')

/** Every code docs/errors.md lists: a refusal must carry one of these. */
const DOCUMENTED_CODES = new Set([...fs.readFileSync(path.resolve(here, '../../docs/errors.md'), 'utf8')
  .matchAll(/^\| `(SNAPCOW_[A-Z_]+)` \|/gm)].map((m) => m[1]!))

interface Scenario {
  base: number
  mutations: Mutation[]
  /** Origin size in sectors: 0 means the store's own origin; otherwise a smaller one. */
  originSectors: number
  /** A chunkSize passed to loadSnapshot (sectors), or none. */
  chunkSectors: number | null
}

let bases: BaseStore[] = []
beforeAll(async () => { bases = await baseStores() })

const scenario = (): fc.Arbitrary<Scenario> => fc.record({
  base: fc.nat({ max: bases.length - 1 }),
  mutations: fc.array(mutation, { maxLength: 4 }),
  originSectors: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 ** 16 }) }),
  chunkSectors: fc.oneof({ weight: 10, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 8, 16) }),
})

interface Store { base: BaseStore; bytes: Uint8Array; originBytes: number; chunkSectors: number | null }

/** One scratch image per base, reused by the sequential loadSnapshot run. */
const scratch = new Map<BaseStore, Uint8Array>()

/** The scenario's store: its bytes live in a shared scratch buffer when `reuse` (valid until the next call). */
function storeOf(s: Scenario, reuse: boolean): Store {
  const base = bases[s.base]!
  const ownSectors = base.origin.size / 512
  const originBytes = (s.originSectors === 0 ? ownSectors : 1 + (s.originSectors % ownSectors)) * 512
  let into: Uint8Array | undefined
  if (reuse) {
    into = scratch.get(base) ?? new Uint8Array(base.cow.length)
    scratch.set(base, into)
  }
  return { base, bytes: applyMutations(base.cow, base.chunkSectors, originBytes, s.mutations, into), originBytes, chunkSectors: s.chunkSectors }
}

/** A refusal must be a SnapcowError with a documented code and a message; anything else is a bug. */
function expectTypedRefusal(error: unknown): asserts error is SnapcowError {
  if (!(error instanceof SnapcowError)) throw error // a crash (TypeError, RangeError, plain Error): fails the property with its stack
  expect(DOCUMENTED_CODES, `code ${error.code} is not in docs/errors.md`).toContain(error.code)
  expect(error.message.length).toBeGreaterThan(10)
}

/** A loaded snapshot must be the table the bytes hold: status, remapped chunks and reads. */
async function expectConsistent(snapshot: Snapshot, verdict: Extract<Verdict, { kind: 'load' }>, store: Store, origin: RecordingDevice): Promise<void> {
  const cs = verdict.chunkSectors
  const chunkBytes = cs * 512
  expect(snapshot.chunkSize).toBe(chunkBytes)
  const status = snapshot.status()
  if (!verdict.valid) {
    expect(status.state).toBe('invalid')
    const error = await snapshot.read(0, new Uint8Array(512)).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(SnapcowError)
    expect((error as SnapcowError).code).toBe('SNAPCOW_INVALID')
    return
  }
  expect(status).toMatchObject({ state: 'active', allocatedSectors: verdict.nextFree * cs,
    metadataSectors: (verdict.currentArea + 2) * cs, totalSectors: store.bytes.length / 512 })
  // The table the judge read is sound by construction; said here as the property it stands for.
  const stride = chunkBytes / 16 + 1
  const deviceChunks = Math.floor(store.bytes.length / chunkBytes)
  const originChunks = Math.ceil(store.originBytes / chunkBytes)
  for (const [o, n] of verdict.table) {
    expect(n > 1 && n % stride !== 1 && n < deviceChunks && o < originChunks, `record [${o}, ${n}]`).toBe(true)
  }
  expect(new Set(verdict.table.map(([o]) => o)).size).toBe(verdict.table.length)
  expect(new Set(verdict.table.map(([, n]) => n)).size).toBe(verdict.table.length)
  // Every record, and nothing else, sends its origin chunk to the COW.
  const inCow = snapshot.extents().filter((e) => e.inCow)
  const remapped = new Set<number>()
  for (const e of inCow) for (let c = e.offset / chunkBytes; c < (e.offset + e.length) / chunkBytes; c++) remapped.add(Math.floor(c))
  expect([...remapped].sort((a, b) => a - b)).toEqual(verdict.table.map(([o]) => o).sort((a, b) => a - b))
  // Reads: a few remapped chunks come from their new_chunk, one other chunk from the origin.
  const readChunk = async (c: number): Promise<Uint8Array> => {
    const length = Math.min(chunkBytes, store.originBytes - c * chunkBytes)
    const bytes = new Uint8Array(length)
    await snapshot.read(c * chunkBytes, bytes)
    return bytes
  }
  const { table } = verdict
  for (const i of new Set([0, table.length >> 1, table.length - 1])) {
    if (table[i] === undefined) continue
    const [oldChunk, newChunk] = table[i]
    const got = await readChunk(oldChunk)
    expect(sameBytes(got, store.bytes.subarray(newChunk * chunkBytes, newChunk * chunkBytes + got.length)),
      `snapshot chunk ${oldChunk} reads COW chunk ${newChunk}`).toBe(true)
  }
  const plain = [0, 1, 2, 3].map((k) => (k * 7 + table.length) % Math.ceil(store.originBytes / chunkBytes)).find((c) => !remapped.has(c))
  if (plain !== undefined) {
    const got = await readChunk(plain)
    const want = new Uint8Array(got.length)
    await origin.inner.read(plain * chunkBytes, want)
    expect(sameBytes(got, want), `snapshot chunk ${plain} reads the origin`).toBe(true)
  }
}

/** Byte equality without a deep-equality walk per byte (chunks are up to 8 KiB, read thousands of times). */
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0

type Outcome = { kind: 'loaded'; valid: boolean } | { kind: 'refused'; code: string }

/** Loads one store through loadSnapshot on recording devices and checks the outcome against the judge. */
async function loadAndCheck(store: Store): Promise<Outcome> {
  const cow = new RecordingDevice(new BytesDevice(store.bytes))
  const originDevice = store.originBytes === store.base.origin.size ? store.base.origin : prefixDevice(store.base.origin, store.originBytes)
  const recordedOrigin = new RecordingDevice(originDevice)
  const origin = await openOrigin(recordedOrigin)
  const verdict = judgeStore(store.bytes, { originBytes: store.originBytes, ...(store.chunkSectors === null ? {} : { chunkSectors: store.chunkSectors }) })
  try {
    let snapshot: Snapshot
    try {
      snapshot = await origin.loadSnapshot(cow, store.chunkSectors === null ? {} : { chunkSize: store.chunkSectors * 512 })
    } catch (error) {
      expectTypedRefusal(error)
      expect({ code: error.code, ...(error instanceof CowFormatError && error.code === 'SNAPCOW_CORRUPT_TABLE' ? { area: error.area, slot: error.slot } : {}) },
        `refused with: ${error.message}`).toEqual(verdict.kind === 'refuse' ? { ...verdict, kind: undefined } : { loads: 'with a sound table' })
      return { kind: 'refused', code: error.code }
    }
    expect(verdict, 'loadSnapshot accepted a store the judge refuses').toMatchObject({ kind: 'load' })
    await expectConsistent(snapshot, verdict as Extract<Verdict, { kind: 'load' }>, store, recordedOrigin)
    return { kind: 'loaded', valid: (verdict as Extract<Verdict, { kind: 'load' }>).valid }
  } finally {
    await origin.close()
    // Loading, reading and closing never write (nor flush) either device.
    expect(cow.trace()).toEqual([])
    expect(recordedOrigin.trace()).toEqual([])
  }
}

test(`${STORES} fuzzed stores through loadSnapshot: a consistent table or a documented refusal, never a write`, async () => {
  console.info(`stores fuzz: seed ${SEED} (replay: SNAPCOW_FUZZ_SEED=${SEED}), ${STORES} stores`)
  const seen = new Map<string, number>()
  await fc.assert(fc.asyncProperty(scenario(), async (s) => {
    const outcome = await loadAndCheck(storeOf(s, true))
    const key = outcome.kind === 'loaded' ? (outcome.valid ? 'loaded' : 'loaded invalid') : outcome.code
    seen.set(key, (seen.get(key) ?? 0) + 1)
  }), { numRuns: STORES, seed: SEED })
  console.info(`stores fuzz outcomes: ${JSON.stringify(Object.fromEntries([...seen].sort()))}`)
  // The mutations must reach both sides: sound loads, invalid loads and every refusal a store can earn.
  expect(seen.get('loaded') ?? 0).toBeGreaterThan(STORES / 20)
  if (STORES < 500) return
  for (const key of ['loaded invalid', 'SNAPCOW_NO_STORE', 'SNAPCOW_BAD_MAGIC', 'SNAPCOW_BAD_VERSION', 'SNAPCOW_BAD_CHUNK_SIZE',
    'SNAPCOW_CHUNK_SIZE_MISMATCH', 'SNAPCOW_COW_TOO_SMALL', 'SNAPCOW_CORRUPT_TABLE']) expect(seen.get(key) ?? 0, key).toBeGreaterThan(0)
})

/** Runs the built CLI; resolves with its exit code and output. */
function snapcow(args: string[], cwd: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, out, err }))
  })
}

test(`${CLI_RUNS} fuzzed stores through \`snapcow check\`: exit 0 or 1 as loadSnapshot decides, never a crash`, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapcow-fuzz-'))
  try {
    // The same seed as the loadSnapshot run; the subset is drawn independently of it.
    const scenarios = fc.sample(scenario(), { numRuns: CLI_RUNS, seed: SEED })
    const verdicts = new Map<number, number>()
    const work = scenarios.map((s, i) => async () => {
      const store = storeOf({ ...s, chunkSectors: null }, false) // the CLI takes the header's chunk size
      const where = `store ${i} (seed ${SEED}): ${store.base.name}, mutations ${JSON.stringify(s.mutations, (_k, v: unknown) => typeof v === 'bigint' ? `${v}n` : v)}`
      fs.writeFileSync(path.join(dir, `${i}.cow`), store.bytes)
      fs.writeFileSync(path.join(dir, `${i}.origin`), new Uint8Array(0))
      fs.truncateSync(path.join(dir, `${i}.origin`), store.originBytes) // sparse: only its size is read
      const run = await snapcow(['check', '--json', '--origin', `${i}.origin`, `${i}.cow`], dir)
      expect(run.code, `${where}\n${run.err}`).toBeOneOf([0, 1])
      expect(run.err, where).not.toMatch(/^\s+at /m) // no stack trace
      const loaded = await loadAndCheck(store)
      // check also reads an invalid store's table and wants the valid flag to be 0 or 1: it passes
      // exactly what loadSnapshot loads, minus those.
      const flag = store.bytes.length >= 8 ? new DataView(store.bytes.buffer, store.bytes.byteOffset).getUint32(4, true) : 0
      const scanned = judgeStore(store.bytes, { originBytes: store.originBytes, scanInvalid: true })
      const sound = loaded.kind === 'loaded' && (flag === 0 || flag === 1) && scanned.kind === 'load'
      expect(run.code, `${where}\nloadSnapshot: ${JSON.stringify(loaded)}\n${run.out}${run.err}`).toBe(sound ? 0 : 1)
      expect(JSON.parse(run.out)).toMatchObject({ sound })
      verdicts.set(run.code!, (verdicts.get(run.code!) ?? 0) + 1)
    })
    // Two processes at a time (the machine has two cores).
    const queue = [...work]
    await Promise.all([0, 1].map(async () => { for (let job = queue.shift(); job !== undefined; job = queue.shift()) await job() }))
    console.info(`snapcow check on ${CLI_RUNS} fuzzed stores (seed ${SEED}): exit codes ${JSON.stringify(Object.fromEntries(verdicts))}`)
    if (CLI_RUNS >= 20) expect([...verdicts.keys()].sort()).toEqual([0, 1])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
