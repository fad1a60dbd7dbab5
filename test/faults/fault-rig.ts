// test/faults/fault-rig.ts: runs a fixed workload on FaultDevices, once clean to count the
// requests per device and kind, then once per fault position, and checks the kernel's rules
// after each (spec §13): a failed copy or commit invalidates that snapshot only, origin writes
// complete, a failed read fails only that read, nothing hangs or rejects unhandled, later I/O works.
import { expect } from 'vitest'
import type { BlockDevice, DeviceSupports } from '../../io/block-device.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin, type Origin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import type { CreateSnapshotOptions } from '../../actors/snapshot-options.js'
import { FaultDevice, type FaultOp } from '../../testing/fault-device.js'
import { seededRandom } from '../../testing/seeded-random.js'
import { pattern } from '../support/bytes.js'

const SECTOR = 512
const OPS: readonly FaultOp[] = ['read', 'write', 'flush']

/** Counts the requests that reach it, per kind, from the last reset on. */
class CountingDevice implements BlockDevice {
  readonly supports: DeviceSupports | undefined
  counts = { read: 0, write: 0, flush: 0 }
  constructor(readonly inner: MemoryDevice) { this.supports = inner.supports }
  get size(): number { return this.inner.size }
  read(offset: number, buffer: Uint8Array): Promise<void> { this.counts.read++; return this.inner.read(offset, buffer) }
  write(offset: number, data: Uint8Array): Promise<void> { this.counts.write++; return this.inner.write(offset, data) }
  flush(): Promise<void> { this.counts.flush++; return this.inner.flush() }
  close(): Promise<void> { return this.inner.close() }
}

/** One fault position: the nth request of kind `op` on `device` (counted from the end of set-up). */
export interface Fault {
  device: string
  op: FaultOp
  nth: number
  mode: 'once' | 'from-then-on'
  takesEffect: boolean
}

export const describeFault = (f: Fault): string =>
  `${f.device} ${f.op} #${f.nth} ${f.mode}${f.takesEffect ? ' (takes effect)' : ''}`

/** A volume's expected bytes; a sector a failed write may or may not have changed keeps what it may still hold as alternatives. */
export class Model {
  readonly bytes: Uint8Array
  readonly #alternatives = new Map<number, Uint8Array[]>()
  constructor(bytes: Uint8Array) { this.bytes = bytes.slice() }

  /** A copy, to check a read against the content when it was issued. */
  clone(): Model {
    const copy = new Model(this.bytes)
    for (const [sector, alternatives] of this.#alternatives) copy.#alternatives.set(sector, [...alternatives])
    return copy
  }

  /** A write issued: the model takes its bytes; returns what the range held. */
  write(offset: number, data: Uint8Array): Uint8Array {
    const old = this.bytes.slice(offset, offset + data.length)
    this.bytes.set(data, offset)
    return old
  }

  /** The write succeeded: its sectors hold exactly its bytes. */
  written(offset: number, length: number): void {
    for (let s = offset / SECTOR; s < (offset + length) / SECTOR; s++) this.#alternatives.delete(s)
  }

  /** The write failed: each of its sectors may hold its bytes or anything it could hold before. */
  uncertain(offset: number, old: Uint8Array): void {
    for (let i = 0; i < old.length; i += SECTOR) {
      const s = (offset + i) / SECTOR
      this.#alternatives.set(s, [...(this.#alternatives.get(s) ?? []), old.slice(i, i + SECTOR)])
    }
  }

  /** Undefined when `actual` (read at `offset`) matches, else where it does not. */
  mismatch(offset: number, actual: Uint8Array): string | undefined {
    for (let i = 0; i < actual.length; i += SECTOR) {
      const got = actual.subarray(i, i + SECTOR)
      const at = offset + i
      if (same(got, this.bytes.subarray(at, at + SECTOR))) continue
      const alternatives = this.#alternatives.get(at / SECTOR) ?? []
      if (alternatives.some((alt) => same(got, alt))) continue
      return `sector at byte ${at} holds neither the expected data${alternatives.length > 0 ? ' nor what it held before the failed writes' : ''}`
    }
    return undefined
  }

  /** After a check: the bytes found become the model (no alternatives left). */
  adopt(actual: Uint8Array): void {
    this.bytes.set(actual)
    this.#alternatives.clear()
  }
}

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i])

interface SnapRecord {
  name: string
  snapshot: Snapshot
  cow: string
  persistent: boolean
  model: Model
  merged: boolean
}

interface Outcome {
  target: string
  op: 'read' | 'write' | 'flush' | 'merge'
  error: unknown
}

/** The devices, volumes and models of one run of a workload. */
export class Run {
  readonly devices = new Map<string, { fault: FaultDevice; counting: CountingDevice }>()
  origin!: Origin
  originModel!: Model
  readonly snaps: SnapRecord[] = []
  readonly failures: Outcome[] = []
  /** Problems found while the workload ran (a read that returned wrong data). */
  readonly problems: string[] = []
  /** A merge that failed, to resume after the fault. */
  unfinishedMerge: SnapRecord | undefined
  /** The snapshot being merged (or merged): origin reads go through its COW. */
  merging: SnapRecord | undefined

  device(name: string, bytes: Uint8Array | number): FaultDevice {
    const memory = typeof bytes === 'number' ? new MemoryDevice(bytes) : MemoryDevice.from(bytes)
    const counting = new CountingDevice(memory)
    const fault = new FaultDevice(counting)
    this.devices.set(name, { fault, counting })
    return fault
  }

  async openOrigin(bytes: number, seed = 1, options: Parameters<typeof openOrigin>[1] = {}): Promise<Origin> {
    const initial = pattern(0, bytes, seed)
    this.origin = await openOrigin(this.device('origin', initial), options)
    this.originModel = new Model(initial)
    return this.origin
  }

  async snapshot(name: string, cowBytes: number, options: CreateSnapshotOptions = {}): Promise<Snapshot> {
    const snapshot = await this.origin.createSnapshot(this.device(name, cowBytes), options)
    this.snaps.push({ name, snapshot, cow: name, persistent: options.persistent !== false, model: new Model(this.originModel.bytes), merged: false })
    return snapshot
  }

  #target(name: string): { volume: Origin | Snapshot; model: Model } {
    if (name === 'origin') return { volume: this.origin, model: this.originModel }
    const s = this.snaps.find((r) => r.name === name)!
    return { volume: s.snapshot, model: s.model }
  }

  /** A write of `pattern(offset, length, seed)`; a failure is recorded, not thrown. */
  async write(target: string, offset: number, length: number, seed: number): Promise<void> {
    const { volume, model } = this.#target(target)
    const data = pattern(offset, length, seed)
    const old = model.write(offset, data)
    try {
      await volume.write(offset, data)
      model.written(offset, length)
    } catch (error) {
      model.uncertain(offset, old)
      this.failures.push({ target, op: 'write', error })
    }
  }

  async read(target: string, offset: number, length: number): Promise<void> {
    const { volume, model } = this.#target(target)
    const buffer = new Uint8Array(length)
    try {
      await volume.read(offset, buffer)
    } catch (error) {
      this.failures.push({ target, op: 'read', error })
      return
    }
    const wrong = model.mismatch(offset, buffer)
    if (wrong !== undefined) this.problems.push(`read of ${target} at ${offset}+${length} returned wrong data: ${wrong}`)
  }

  async flush(target: string): Promise<void> {
    try {
      await this.#target(target).volume.flush()
    } catch (error) {
      this.failures.push({ target, op: 'flush', error })
    }
  }

  /** Merges `name` into the origin; a failed merge is resumed by the checks after the fault. */
  async merge(name: string): Promise<void> {
    const s = this.snaps.find((r) => r.name === name)!
    this.originModel = s.model // from the start of a merge the origin reads as the snapshot
    this.merging = s
    try {
      await s.snapshot.merge()
      this.#merged(s)
    } catch (error) {
      this.failures.push({ target: name, op: 'merge', error })
      this.unfinishedMerge = s
    }
  }

  /** Resolves once `name` merges (the handover is done) or its merge has ended. */
  async mergeStarted(name: string): Promise<void> {
    const s = this.snaps.find((r) => r.name === name)!
    for (let i = 0; i < 1000 && s.snapshot.status().state === 'active' && !s.merged && this.unfinishedMerge !== s; i++) await turns(1)
  }

  #merged(s: SnapRecord): void {
    s.merged = true
    this.originModel = s.model
  }

  async resumeMerge(): Promise<void> {
    const s = this.unfinishedMerge
    if (s === undefined) return
    await s.snapshot.merge()
    this.unfinishedMerge = undefined
    this.#merged(s)
  }

  counts(): Map<string, Record<FaultOp, number>> {
    return new Map([...this.devices].map(([name, d]) => [name, { ...d.counting.counts }]))
  }

  resetCounts(): void {
    for (const d of this.devices.values()) d.counting.counts = { read: 0, write: 0, flush: 0 }
  }
}

export interface Workload {
  name: string
  /** Builds the origin and snapshots (no fault yet). */
  setup(run: Run): Promise<void>
  /** The I/O under test. Must not overlap concurrent writes to one range. */
  body(run: Run): Promise<void>
}

/** Every fault position of a clean run's counts: each (device, kind, n), once and from then on, and for writes with and without effect. */
export function allPositions(counts: Map<string, Record<FaultOp, number>>): Fault[] {
  const out: Fault[] = []
  for (const [device, byOp] of counts) {
    for (const op of OPS) {
      for (let nth = 1; nth <= byOp[op]; nth++) {
        for (const mode of ['once', 'from-then-on'] as const) {
          for (const takesEffect of op === 'write' ? [false, true] : [false]) out.push({ device, op, nth, mode, takesEffect })
        }
      }
    }
  }
  return out
}

/**
 * Every position with SNAPCOW_FAULT_POSITIONS=all, else at most that many (default `budget`),
 * taken with a stride from a seeded start (SNAPCOW_FAULT_SEED, else random; printed on failure).
 */
export function samplePositions(all: Fault[], budget: number): { positions: Fault[]; seed: number } {
  const setting = process.env.SNAPCOW_FAULT_POSITIONS
  const seed = Number(process.env.SNAPCOW_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31))
  if (setting === 'all') return { positions: all, seed }
  const limit = setting !== undefined && setting !== '' ? Number(setting) : budget
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`SNAPCOW_FAULT_POSITIONS must be 'all' or a positive integer, got ${setting}`)
  if (all.length <= limit) return { positions: all, seed }
  const stride = all.length / limit
  const start = seededRandom(seed)() * stride
  return { positions: Array.from({ length: limit }, (_, i) => all[Math.floor(start + i * stride)]!), seed }
}

const codeOf = (error: unknown): unknown => (error as { code?: unknown } | undefined)?.code

/** Rejections not yet handled, collected while a run goes on (process-wide). */
const unhandled: unknown[] = []
let listening = false
function listenForUnhandled(): void {
  if (listening) return
  listening = true
  process.on('unhandledRejection', (reason) => { unhandled.push(reason) })
}

const turns = async (n: number) => { for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve)) }

async function withTimeout<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: still running after ${ms} ms (a hang)`)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Runs `workload` clean and returns the request counts of its body, after checking the clean run too. */
export async function cleanRun(workload: Workload): Promise<{ counts: Map<string, Record<FaultOp, number>>; invalid: Set<string> }> {
  listenForUnhandled()
  const run = new Run()
  await workload.setup(run)
  run.resetCounts()
  await withTimeout(`${workload.name} clean`, 10_000, workload.body(run))
  const counts = run.counts()
  expect(run.failures.filter((f) => !isInvalidError(f.error)), 'the clean run fails nothing but I/O to an Invalid snapshot').toEqual([])
  const invalid = new Set(run.snaps.filter((s) => !s.merged && s.snapshot.status().state === 'invalid').map((s) => s.name))
  await withTimeout(`${workload.name} clean checks`, 10_000, checkAfter(run, undefined, invalid))
  return { counts, invalid }
}

const isInvalidError = (e: unknown): boolean => codeOf(e) === 'SNAPCOW_INVALID'

/** Runs `workload` with one fault and checks everything; throws naming the fault (and seed) when a rule is broken. */
export async function faultRun(workload: Workload, fault: Fault, invalidWhenClean: Set<string>): Promise<void> {
  listenForUnhandled()
  const run = new Run()
  await workload.setup(run)
  const device = run.devices.get(fault.device)!.fault
  device.arm({ op: fault.op, nth: fault.nth, mode: fault.mode, takesEffect: fault.takesEffect })
  await withTimeout(`${workload.name} with fault ${describeFault(fault)}`, 5_000, workload.body(run))
  expect(device.faultsInjected, 'the position is reached again (the workload is deterministic)').toBeGreaterThan(0)
  await withTimeout(`${workload.name} checks after fault ${describeFault(fault)}`, 5_000, checkAfter(run, fault, invalidWhenClean))
  tally.runs++
  if (run.snaps.some((s) => !invalidWhenClean.has(s.name) && !s.merged && s.snapshot.status().state === 'invalid')) tally.invalidated++
  if (run.failures.length > 0) tally.withFailedRequests++
  if (run.failures.some((f) => f.op === 'merge')) tally.failedMerges++
  if (run.snaps.some((s) => s.snapshot.status().warning !== undefined)) tally.warnings++
}

/** What the fault runs so far did: a test can assert its positions exercised each outcome. */
export const tally = { runs: 0, invalidated: 0, withFailedRequests: 0, failedMerges: 0, warnings: 0 }

/** May this fault make snapshot `s` Invalid? A failed copy (origin read, COW write) or commit (COW write or flush). */
function mayInvalidate(fault: Fault, s: SnapRecord): boolean {
  if (fault.device === s.cow) return fault.op !== 'read'
  return fault.device === 'origin' && fault.op === 'read'
}

/** Is this failed request one the fault explains? */
function explained(fault: Fault | undefined, f: Outcome, invalid: Set<string>, run: Run): boolean {
  if (fault === undefined) return isInvalidError(f.error) && invalid.has(f.target)
  if (f.target !== 'origin' && invalid.has(f.target)) return true // I/O of an Invalid snapshot fails
  if (f.op === 'merge') return fault.device === 'origin' || fault.device === f.target
  if (f.target === 'origin') {
    if (f.op === 'write' && codeOf(f.error) === 'SNAPCOW_MERGE_FAILED') return run.failures.some((m) => m.op === 'merge') // held on the failed batch
    // While merging, the origin volume reads, writes and flushes remapped chunks through the merging snapshot's COW.
    if (fault.op === f.op && fault.device === run.merging?.cow && run.merging.snapshot.status().state !== 'active') return true
    return fault.device === 'origin' && fault.op === f.op
  }
  const s = run.snaps.find((r) => r.name === f.target)!
  if (f.op === 'read') return fault.op === 'read' && (fault.device === 'origin' || fault.device === s.cow)
  return fault.device === s.cow && fault.op === f.op
}

async function checkAfter(run: Run, fault: Fault | undefined, invalidWhenClean: Set<string>): Promise<void> {
  await turns(3)
  for (const d of run.devices.values()) d.fault.disarm() // the disk is repaired: later I/O must work
  const problems = [...run.problems]
  // A merge the fault stopped is resumed and completes.
  if (run.unfinishedMerge !== undefined) {
    const failure = run.failures.find((f) => f.op === 'merge')!
    if (!(failure.error instanceof Error) || typeof codeOf(failure.error) !== 'string') problems.push(`the merge failed without an error code: ${String(failure.error)}`)
    await run.resumeMerge()
  }
  const invalid = new Set(run.snaps.filter((s) => !s.merged && s.snapshot.status().state === 'invalid').map((s) => s.name))
  for (const name of invalid) {
    const s = run.snaps.find((r) => r.name === name)!
    if (!invalidWhenClean.has(name) && (fault === undefined || !mayInvalidate(fault, s))) problems.push(`snapshot ${name} became Invalid, but the fault was not on its copies or commits`)
  }
  const newlyInvalid = [...invalid].filter((n) => !invalidWhenClean.has(n))
  if (fault?.mode === 'once' && newlyInvalid.length > 1) problems.push(`one failed request invalidated ${newlyInvalid.length} snapshots: ${newlyInvalid.join(', ')}`)
  for (const f of run.failures) {
    if (!explained(fault, f, invalid, run)) problems.push(`${f.op} of ${f.target} failed, which the fault does not explain: ${String(f.error)}`)
    if (!(f.error instanceof Error) || typeof codeOf(f.error) !== 'string') problems.push(`${f.op} of ${f.target} failed with an error without a code: ${String(f.error)}`)
  }
  if (fault?.mode === 'once') {
    const direct = run.failures.filter((f) => (f.target === 'origin' || !invalid.has(f.target)) && codeOf(f.error) !== 'SNAPCOW_MERGE_FAILED')
    if (direct.length > 1) problems.push(`one failed request failed ${direct.length} requests of valid volumes: ${direct.map((f) => `${f.op} of ${f.target}`).join(', ')}`)
  }
  // Content: the origin and every valid snapshot read exactly their models; an Invalid one refuses.
  await checkContent(run, invalid, problems, 'after the fault')
  // Later I/O works: a write over the whole origin (copies to every valid snapshot), then the content again.
  if (problems.length === 0) {
    const size = run.origin.size
    const before = run.failures.length
    await run.write('origin', 0, size, 99)
    for (const s of run.snaps) if (!s.merged && !invalid.has(s.name)) await run.write(s.name, 0, SECTOR, 98)
    if (run.failures.length > before) problems.push(`I/O after the fault failed: ${run.failures.slice(before).map((f) => `${f.op} of ${f.target}: ${String(f.error)}`).join('; ')}`)
    else await checkContent(run, invalid, problems, 'after later writes')
  }
  // The stores as the devices hold them load as what they are: valid with the model, or invalid (or refused).
  if (problems.length === 0) await checkReload(run, invalid, problems)
  await turns(2)
  if (unhandled.length > 0) problems.push(`unhandled rejections: ${unhandled.splice(0).map(String).join('; ')}`)
  if (problems.length > 0) throw new Error(`${fault === undefined ? 'clean run' : `fault ${describeFault(fault)}`}:\n  ${problems.join('\n  ')}`)
}

async function checkContent(run: Run, invalid: Set<string>, problems: string[], when: string): Promise<void> {
  const originBytes = new Uint8Array(run.origin.size)
  await run.origin.read(0, originBytes)
  const wrong = run.originModel.mismatch(0, originBytes)
  if (wrong !== undefined) problems.push(`origin ${when}: ${wrong}`)
  else run.originModel.adopt(originBytes)
  for (const s of run.snaps) {
    if (s.merged) continue
    const bytes = new Uint8Array(s.snapshot.size)
    if (invalid.has(s.name)) {
      const error = await s.snapshot.read(0, bytes).then(() => undefined, (e: unknown) => e)
      if (codeOf(error) !== 'SNAPCOW_INVALID') problems.push(`Invalid snapshot ${s.name} ${when}: a read gave ${String(error)}, not SNAPCOW_INVALID`)
      continue
    }
    await s.snapshot.read(0, bytes)
    const diff = s.model.mismatch(0, bytes)
    if (diff !== undefined) problems.push(`snapshot ${s.name} ${when}: ${diff}`)
    else s.model.adopt(bytes)
  }
}

async function checkReload(run: Run, invalid: Set<string>, problems: string[]): Promise<void> {
  const warnings = new Map(run.snaps.map((s) => [s.name, s.merged ? undefined : s.snapshot.status().warning]))
  await run.origin.close()
  const bytesOf = (name: string) => run.devices.get(name)!.counting.inner.snapshotBytes()
  const origin = await openOrigin(MemoryDevice.from(bytesOf('origin')))
  const originBytes = new Uint8Array(origin.size)
  await origin.read(0, originBytes)
  const wrong = run.originModel.mismatch(0, originBytes)
  if (wrong !== undefined) problems.push(`origin device after close: ${wrong}`)
  for (const s of run.snaps) {
    if (s.merged || !s.persistent) continue
    const loaded = await origin.loadSnapshot(MemoryDevice.from(bytesOf(s.cow))).then((v) => v, (e: unknown) => e as Error)
    if (invalid.has(s.name)) {
      if (loaded instanceof Error) {
        if (typeof codeOf(loaded) !== 'string') problems.push(`Invalid snapshot ${s.name} is refused on reload without an error code: ${String(loaded)}`)
      } else if (loaded.status().state !== 'invalid' && warnings.get(s.name) === undefined) {
        problems.push(`Invalid snapshot ${s.name} reloads as ${loaded.status().state}, and no warning said its header could not be written`)
      }
      continue
    }
    if (loaded instanceof Error) { problems.push(`valid snapshot ${s.name} does not reload: ${String(loaded)}`); continue }
    const bytes = new Uint8Array(loaded.size)
    await loaded.read(0, bytes)
    const diff = s.model.mismatch(0, bytes)
    if (diff !== undefined) problems.push(`snapshot ${s.name} reloaded: ${diff}`)
  }
  await origin.close()
}

/**
 * Runs `workload` clean, then with a fault at each sampled position; fails with every position
 * that broke a rule (at most 20 listed) and the seed that picked them.
 */
export async function runPositions(workload: Workload, budget: number): Promise<{ ran: number; total: number }> {
  const { counts, invalid } = await cleanRun(workload)
  const all = allPositions(counts)
  const { positions, seed } = samplePositions(all, budget)
  const broken: string[] = []
  for (const fault of positions) {
    try {
      await faultRun(workload, fault, invalid)
    } catch (error) {
      broken.push((error as Error).message.split('\n').slice(0, 8).join('\n'))
      if (broken.length >= 20) break
    }
  }
  expect(broken, `${workload.name}: ${broken.length} broken positions (of ${positions.length} run, ${all.length} in all; SNAPCOW_FAULT_SEED=${seed})`).toEqual([])
  return { ran: positions.length, total: all.length }
}
