// test/support/power-cut.ts: a seeded workload over an origin and 1–3 persistent snapshots
// (chunk sizes 4–64 KiB, small COWs that fill, P and PO), with concurrent writes, reads and
// flushes of every volume and merges stopped and resumed, run on CrashDevices whose requests
// complete out of order; the power is cut at a chosen request. Then a restart: every image as
// the cut left it, each COW loaded again (a merge in progress is merged again), and every
// volume checked against its per-sector model (sector-model.ts).
import type { EngineFaults } from '../../actors/engine.js'
import type { Origin } from '../../actors/origin-volume.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import type { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import type { CrashMode, RandomCut } from '../../testing/crash-device.js'
import { CrashClock, CrashDevice } from '../../testing/crash-device.js'
import { seededRandom } from './delayed-device.js'
import type { WriteRecord } from './sector-model.js'
import { firstDisallowed, LogicalClock, stamped, VolumeModel } from './sector-model.js'

const SECTOR = 512
export const ORIGIN_SECTORS = 512 // 256 KiB: 4 chunks of 64 KiB, 64 of 4 KiB
const CHUNK_SECTORS = [8, 16, 32, 128] as const

interface SnapRecord {
  name: string
  chunkSectors: number
  overflow: boolean
  cow: CrashDevice
  volume?: Snapshot
  model?: VolumeModel
  /** Set when merge() has taken over (the origin reads as this snapshot from then on). */
  handoverTime?: number
  merging?: Promise<void>
  controller?: AbortController
  merged: boolean
  /** drop() resolved after its merge was stopped: it is gone, and the origin must still read as merged. */
  dropped?: boolean
  invalidAtCut: boolean
  /** createSnapshot was called while another snapshot merged: a refusal is an answer too. */
  duringMerge?: boolean
}

interface Flush { covers: ReadonlySet<string>; issue: number }

/** What a workload may do (all on by default) and the engine faults to run it with. */
export interface WorkloadOptions {
  faults?: EngineFaults
  /** Small COWs that fill (Invalid, Overflow); off: every COW has room for every chunk. */
  fills?: boolean
  merges?: boolean
  /** Drop a snapshot whose merge was stopped (default on). */
  dropStoppedMerges?: boolean
  /** Create a snapshot while another merges (default on). */
  createWhileMerging?: boolean
}

/** A run of the workload of one seed, cut at request `cutAt` (Infinity: cut after the last phase). */
export class PowerCutRun {
  readonly clock = new CrashClock()
  readonly time = new LogicalClock()
  readonly log: string[] = []
  /** Wrong results seen before the cut (reads, errors), as messages. */
  readonly failures: string[] = []
  readonly snaps: SnapRecord[] = []
  readonly flushes: Flush[] = []
  originDevice!: CrashDevice
  origin!: Origin
  originModel = VolumeModel.initial(ORIGIN_SECTORS)
  cutTime = Number.POSITIVE_INFINITY
  #nextId = 1
  readonly #rand: () => number
  readonly #delays: () => number
  #cutSignal!: Promise<void>

  constructor(readonly seed: number, readonly cutAt: number, private readonly options: WorkloadOptions = {}) {
    this.#rand = seededRandom(seed)
    const delays = seededRandom(seed ^ 0x5bd1e995)
    this.#delays = () => { const r = delays(); return r < 0.4 ? 0 : Math.floor(r * 5) }
  }

  #below(n: number): number { return Math.floor(this.#rand() * n) }

  get requests(): number { return this.clock.steps }

  /** Runs the workload until the cut; resolves at the cut (or when the last phase is done, then cuts). */
  async run(): Promise<void> {
    this.#cutSignal = new Promise((resolve) => {
      this.clock.onCrash = () => { this.#atCut(); resolve() }
    })
    this.originDevice = new CrashDevice(stampedImage(), this.clock, 'origin', { delay: this.#delays })
    this.origin = await openOrigin(this.originDevice, { faults: this.options.faults ?? {} })
    this.clock.arm(this.cutAt)
    const planned = 1 + this.#below(3)
    const phases = 24 + this.#below(16)
    for (let p = 0; p < phases && !this.clock.crashed; p++) {
      let timer: NodeJS.Timeout | undefined
      const stalled = new Promise<'stalled'>((resolve) => { timer = setTimeout(() => resolve('stalled'), 3000) })
      const outcome = await Promise.race([this.#phase(planned), this.#cutSignal, stalled])
      clearTimeout(timer)
      if (outcome === 'stalled') { // a request that never finishes (a write held for good) is a failure, not a hang
        this.failures.push(`phase ${p} has not finished for 3 s`)
        break
      }
    }
    this.clock.cut() // a cut after the last phase: what is unflushed may still be lost
    for (let i = 0; i < 20; i++) await turn() // let the refused requests settle
  }

  #atCut(): void {
    this.cutTime = this.time.tick()
    for (const s of this.snaps) s.invalidAtCut = s.volume?.status().state === 'invalid'
    this.log.push(`t${this.cutTime} power cut at request ${this.clock.steps}`)
  }

  #phase(planned: number): Promise<void> {
    const merging = this.#mergingSnap()
    const r = this.#rand()
    // Now and then a snapshot of the origin while it merges: it must show the merged view (known bug 7).
    if (merging === undefined ? this.snaps.length < planned && (this.snaps.length === 0 || r < 0.12) : this.snaps.length < 3 && r < 0.06 && this.options.createWhileMerging !== false) return this.#create()
    if (merging === undefined && r < 0.16 && this.options.merges !== false) {
      const candidates = this.snaps.filter((s) => s.volume !== undefined && s.handoverTime === undefined && s.volume.status().state !== 'invalid')
      if (candidates.length > 0) return this.#startMerge(candidates[this.#below(candidates.length)]!)
    }
    if (merging !== undefined && merging.controller!.signal.aborted) {
      if (r < 0.14) return this.#resumeMerge(merging)
      if (r < 0.22 && this.options.dropStoppedMerges !== false) return this.#dropStopped(merging)
    } else if (merging !== undefined && r < 0.24) {
      return this.#stopMerge(merging)
    }
    return this.#ioGroup()
  }

  #mergingSnap(): SnapRecord | undefined {
    return this.snaps.find((s) => s.handoverTime !== undefined && !s.merged && s.dropped !== true)
  }

  /** The volumes that take I/O now, and the model each one reads and writes. */
  #volumes(): Array<{ name: string; volume: Origin | Snapshot; model: VolumeModel; snap?: SnapRecord }> {
    const out: Array<{ name: string; volume: Origin | Snapshot; model: VolumeModel; snap?: SnapRecord }> =
      [{ name: 'origin', volume: this.origin, model: this.originModel }]
    for (const s of this.snaps) {
      if (s.volume === undefined || s.merged || s.dropped === true || s.model === undefined) continue
      out.push({ name: s.name, volume: s.volume, model: s.handoverTime !== undefined ? this.originModel : s.model, snap: s })
    }
    return out
  }

  /** Which write domains a flush of `name` covers: a merging snapshot's flushes cover origin and COW (spec §5.5, §12). */
  #covers(name: string): Set<string> {
    const merging = this.#mergingSnap()
    if (merging !== undefined && (name === 'origin' || name === merging.name)) return new Set(['origin', merging.name])
    return new Set([name])
  }

  async #ioGroup(): Promise<void> {
    const volumes = this.#volumes()
    const ops: Array<Promise<void>> = []
    const written = new Map<VolumeModel, Array<[number, number]>>()
    for (let n = 1 + this.#below(4); n > 0; n--) {
      const v = volumes[this.#below(volumes.length)]!
      const kind = this.#rand()
      if (kind < 0.15) { ops.push(this.#flush(v.name, v.volume)); continue }
      const count = this.#rand() < 0.7 ? 1 + this.#below(16) : 1 + this.#below(192)
      const sector = this.#below(ORIGIN_SECTORS)
      const len = Math.min(count, ORIGIN_SECTORS - sector)
      if (kind < 0.4) { ops.push(this.#read(v.name, v.volume, v.model, sector, len, v.snap)); continue }
      const taken = written.get(v.model) ?? []
      if (taken.some(([a, b]) => sector < b && a < sector + len)) continue // no two overlapping writes in flight
      taken.push([sector, sector + len])
      written.set(v.model, taken)
      ops.push(this.#write(v.name, v.volume, v.model, sector, len, v.snap))
    }
    await Promise.all(ops)
  }

  #write(name: string, volume: Origin | Snapshot, model: VolumeModel, sector: number, count: number, snap?: SnapRecord): Promise<void> {
    const id = this.#nextId++
    // A write through a merging snapshot is a write to the merging volume (the origin's domain).
    const w: WriteRecord = { id, volume: snap?.handoverTime !== undefined ? 'origin' : name, issue: this.time.tick(), ack: Infinity }
    model.record(w, sector, count)
    this.log.push(`t${w.issue} write ${id} → ${name} sectors ${sector}+${count}`)
    return volume.write(sector * SECTOR, stamped(id, sector, count)).then(
      () => { w.ack = this.time.tick() },
      (error: unknown) => this.#expected(error, `write ${id} to ${name}`, snapshotCodes(name, snap, ['SNAPCOW_INVALID', 'SNAPCOW_OVERFLOW'])))
  }

  #read(name: string, volume: Origin | Snapshot, model: VolumeModel, sector: number, count: number, snap?: SnapRecord): Promise<void> {
    const start = this.time.tick()
    const into = new Uint8Array(count * SECTOR)
    return volume.read(sector * SECTOR, into).then(() => {
      const end = this.time.tick()
      if (this.clock.crashed) return
      const wrong = firstDisallowed(into, sector, model, (s) => model.allowedInMemory(s, start, end))
      if (wrong !== undefined) this.failures.push(`read of ${name} sectors ${sector}+${count} (t${start}–t${end}): ${wrong}`)
    }, (error: unknown) => this.#expected(error, `read of ${name}`, snapshotCodes(name, snap, ['SNAPCOW_INVALID'])))
  }

  #flush(name: string, volume: Origin | Snapshot): Promise<void> {
    const flush: Flush = { covers: this.#covers(name), issue: this.time.tick() }
    this.log.push(`t${flush.issue} flush ${name}`)
    return volume.flush().then(() => {
      if (!this.clock.crashed) this.flushes.push(flush)
    }, (error: unknown) => this.#expected(error, `flush of ${name}`, []))
  }

  #expected(error: unknown, what: string, codes: string[]): void {
    if (this.clock.crashed) return // the cut explains any failure from here on
    const code = (error as SnapcowError | undefined)?.code
    if (code !== undefined && codes.includes(code)) return
    this.failures.push(`${what} failed before the cut: ${String(error)}`)
  }

  async #create(): Promise<void> {
    const name = `s${this.snaps.length}`
    const chunkSectors = CHUNK_SECTORS[this.#below(CHUNK_SECTORS.length)]!
    const originChunks = ORIGIN_SECTORS / chunkSectors
    const dataChunks = this.options.fills === false ? originChunks + 2 : 1 + this.#below(Math.max(2, Math.floor(originChunks * 0.6)))
    const overflow = this.#rand() < 0.5
    const cow = new CrashDevice(new Uint8Array((2 + dataChunks) * chunkSectors * SECTOR), this.clock, name, { delay: this.#delays })
    const snap: SnapRecord = { name, chunkSectors, overflow, cow, merged: false, invalidAtCut: false, duringMerge: this.#mergingSnap() !== undefined }
    this.snaps.push(snap)
    const call = this.time.tick()
    this.log.push(`t${call} createSnapshot ${name}: ${chunkSectors * SECTOR} B chunks, ${dataChunks} data chunks, ${overflow ? 'PO' : 'P'}`)
    try {
      snap.volume = await this.origin.createSnapshot(cow, { chunkSize: chunkSectors * SECTOR, overflow })
    } catch (error) {
      // While another snapshot merges, refusing is an answer too (a SnapcowError that says why).
      if (snap.duringMerge === true && (error as SnapcowError).code !== undefined) return
      return this.#expected(error, `createSnapshot ${name}`, [])
    }
    const model = this.originModel.snapshot(call, this.time.tick())
    snap.model = model
    // Read it all at once: settles what it holds of writes that raced its creation.
    const start = this.time.tick()
    const all = new Uint8Array(ORIGIN_SECTORS * SECTOR)
    try {
      await snap.volume.read(0, all)
    } catch (error) {
      return this.#expected(error, `the first read of ${name}`, [])
    }
    const wrong = firstDisallowed(all, 0, model, (s) => model.allowedInMemory(s, start, this.time.now))
    if (wrong !== undefined && !this.clock.crashed) this.failures.push(`${name} right after createSnapshot: ${wrong}`)
    for (let s = 0; s < ORIGIN_SECTORS; s++) {
      const id = new DataView(all.buffer, s * SECTOR + 4, 4).getUint32(0, true)
      model.pin(s, id)
    }
  }

  async #startMerge(snap: SnapRecord): Promise<void> {
    snap.controller = new AbortController()
    this.log.push(`t${this.time.tick()} merge ${snap.name}`)
    let settled = false
    this.#watchMerge(snap, snap.volume!.merge({ signal: snap.controller.signal }).finally(() => { settled = true }))
    // The handover: once the origin reads as the snapshot, its model is the snapshot's. (The
    // status word does not tell: an Overflow snapshot says "overflow" while it merges.)
    const handingOver = () => this.origin.engine.merging?.id !== snap.volume!.id && !snap.merged
    while (handingOver() && !settled && !this.clock.crashed) await turn()
    // A cut may come right after the handover: what counts is whether it happened.
    if (handingOver()) return
    snap.handoverTime = this.time.tick()
    this.originModel = snap.model!
    this.log.push(`t${snap.handoverTime} ${snap.name} took over the origin`)
  }

  #watchMerge(snap: SnapRecord, merging: Promise<void>): void {
    snap.merging = merging.then(() => {
      if (this.clock.crashed) return
      snap.merged = true
      // The merge flushed the origin before clearing each batch: the snapshot's own writes are durable there.
      this.flushes.push({ covers: new Set([snap.name]), issue: snap.handoverTime ?? this.time.now })
      this.log.push(`t${this.time.tick()} merge of ${snap.name} done`)
    }, (error: unknown) => {
      if (snap.controller!.signal.aborted && error === snap.controller!.signal.reason) return
      this.#expected(error, `merge of ${snap.name}`, [])
    })
  }

  async #stopMerge(snap: SnapRecord): Promise<void> {
    this.log.push(`t${this.time.tick()} stop merge of ${snap.name}`)
    snap.controller!.abort()
    await snap.merging
  }

  async #resumeMerge(snap: SnapRecord): Promise<void> {
    await snap.merging
    if (snap.merged || this.clock.crashed) return
    this.log.push(`t${this.time.tick()} resume merge of ${snap.name}`)
    snap.controller = new AbortController()
    this.#watchMerge(snap, snap.volume!.merge({ signal: snap.controller.signal }))
  }

  /**
   * drop() of a snapshot whose merge was stopped: it may refuse, or finish the merge, but the
   * origin must go on reading as merged, with every acknowledged write (checked at once).
   */
  async #dropStopped(snap: SnapRecord): Promise<void> {
    await snap.merging
    if (snap.merged || this.clock.crashed) return
    this.log.push(`t${this.time.tick()} drop ${snap.name} (its merge stopped)`)
    try {
      await snap.volume!.drop()
      snap.dropped = true
    } catch (error) {
      this.log.push(`t${this.time.tick()} drop of ${snap.name} refused: ${String(error)}`)
    }
    if (this.clock.crashed) return
    const start = this.time.tick()
    const all = new Uint8Array(ORIGIN_SECTORS * SECTOR)
    try {
      await this.origin.read(0, all)
    } catch (error) {
      return this.#expected(error, 'the origin read after the drop', [])
    }
    const model = this.originModel
    const wrong = firstDisallowed(all, 0, model, (x) => model.allowedInMemory(x, start, this.time.tick()))
    if (wrong !== undefined && !this.clock.crashed) this.failures.push(`the origin right after drop() of ${snap.name}, whose merge was stopped: ${wrong}`)
  }

  /** Whether a write was covered by a flush that resolved before the cut. */
  durable = (w: WriteRecord): boolean =>
    this.flushes.some((f) => f.covers.has(w.volume) && w.ack < f.issue)

  /**
   * A restart after the cut: the images the mode leaves, every snapshot made before the cut
   * loaded again (a merge in progress merged again), every volume checked. Returns the first
   * problem, or undefined.
   */
  async restart(mode: CrashMode | ((device: string) => RandomCut)): Promise<string | undefined> {
    const image = (d: CrashDevice) => d.crash(typeof mode === 'function' ? mode(d.name) : mode)
    const origin = await openOrigin(image(this.originDevice))
    const loaded: Array<[SnapRecord, Snapshot]> = []
    for (const s of this.snaps) {
      if (s.volume === undefined) { // cut while createSnapshot ran: no store yet, or an empty one
        const problem = await loadsEmptyOrNotAtAll(image(s.cow))
        if (problem !== undefined) return `${s.name}, cut while it was created: ${problem}`
        continue
      }
      // Merged away or dropped. One whose createSnapshot was called while another merged is
      // loaded like any other: the engine refuses a create during a merge (at the call and at
      // activation), so one that was made snapshots the origin as merged, as its model does.
      // (Skipping it hid its own merge from the restart: seed 203, cut at request 273.)
      if (s.model === undefined || s.merged || s.dropped === true) continue
      let volume: Snapshot
      try {
        volume = await origin.loadSnapshot(image(s.cow), { overflow: s.overflow })
      } catch (error) {
        return `${s.name} does not load after the cut: ${String(error)}`
      }
      if (volume.status().state === 'invalid') {
        if (!s.invalidAtCut) return `${s.name} loads Invalid, but it was valid at the cut`
        continue
      }
      loaded.push([s, volume])
    }
    const merging = loaded.find(([s]) => s.handoverTime !== undefined)
    if (merging !== undefined) {
      try {
        await withTimeout(merging[1].merge(), 10_000, `merging ${merging[0].name} again`)
      } catch (error) {
        return `merging ${merging[0].name} again after the cut failed: ${String(error)}`
      }
    }
    const all = new Uint8Array(ORIGIN_SECTORS * SECTOR)
    try {
      await origin.read(0, all)
    } catch (error) {
      return `the origin after the restart: its read fails: ${String(error)}`
    }
    const wrong = firstDisallowed(all, 0, this.originModel, (s) => this.originModel.allowedAfterCut(s, this.cutTime, this.durable))
    if (wrong !== undefined) return `the origin after the restart${merging !== undefined ? ` and the merge of ${merging[0].name}` : ''}: ${wrong}`
    for (const [s, volume] of loaded) {
      if (s === merging?.[0]) continue
      // The merge copies for the other snapshots before it overwrites the origin: one whose COW
      // fills then goes Invalid, as it would have had the merge gone on without the cut.
      if (merging !== undefined && volume.status().state === 'invalid') continue
      try {
        await volume.read(0, all)
      } catch (error) {
        return `${s.name} after the restart: its read fails: ${String(error)}`
      }
      const model = s.model!
      const bad = firstDisallowed(all, 0, model, (x) => model.allowedAfterCut(x, this.cutTime, this.durable))
      if (bad !== undefined) return `${s.name} (${s.chunkSectors * SECTOR} B chunks${s.invalidAtCut ? ', Invalid at the cut' : ''}) after the restart: ${bad}`
    }
    return undefined
  }

  /** The last requests and workload steps, for a failure message. */
  describe(lines = 60): string {
    return `workload (last ${lines}):\n  ${this.log.slice(-lines).join('\n  ')}\nI/O trace (last ${lines} of ${this.clock.trace.length} requests):\n  ${this.clock.trace.slice(-lines).join('\n  ')}`
  }
}

/** What a snapshot's I/O may fail with; once its merge has taken over, also "merged away" (the merge may end first). */
function snapshotCodes(name: string, snap: SnapRecord | undefined, codes: string[]): string[] {
  if (name === 'origin') return []
  return snap?.handoverTime !== undefined ? [...codes, 'SNAPCOW_DETACHED'] : codes
}

/** A COW whose createSnapshot was cut: "no store" (magic 0), or a valid store with no exceptions. */
async function loadsEmptyOrNotAtAll(cow: MemoryDevice): Promise<string | undefined> {
  const origin = await openOrigin(new MemoryDevice(ORIGIN_SECTORS * SECTOR))
  try {
    const snapshot = await origin.loadSnapshot(cow)
    const status = snapshot.status()
    if (status.state !== 'active' || status.allocatedSectors !== status.metadataSectors) return `it loads as ${status.line}, not as an empty store`
  } catch (error) {
    if ((error as SnapcowError).code !== 'SNAPCOW_NO_STORE') return `it does not load: ${String(error)}`
  }
  return undefined
}

function stampedImage(): Uint8Array {
  const image = new Uint8Array(ORIGIN_SECTORS * SECTOR)
  image.set(stamped(0, 0, ORIGIN_SECTORS))
  return image
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The restarts tried after each cut: nothing unflushed kept, and two seeded random cuts (prefix tears; any subsets). */
export function restartModes(seed: number): Array<{ label: string; mode: CrashMode | ((device: string) => RandomCut) }> {
  const random = (label: string, salt: number, subsets: boolean) => ({
    label,
    mode: (device: string) => ({ random: seededRandom(seed ^ salt ^ hash(device)), subsets }),
  })
  return [{ label: 'lose-unflushed', mode: 'lose-unflushed' }, random('random, prefix tears', 0x1234567, false), random('random, subset tears', 0x7654321, true)]
}

function hash(text: string): number {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  return h >>> 0
}

/**
 * Runs the workload of `seed` cut at request `cutAt`, then each restart; returns the first
 * failure as a full message (seed, cut, mode, trace), or undefined.
 */
export async function cutAndRestart(seed: number, cutAt: number, options: WorkloadOptions = {}): Promise<{ failure?: string; requests: number }> {
  const run = new PowerCutRun(seed, cutAt, options)
  await run.run()
  const where = `seed ${seed}, power cut at request ${cutAt === Infinity ? `${run.requests} (after the last phase)` : cutAt}`
  if (run.failures.length > 0) return { requests: run.requests, failure: `${where}: before the cut: ${run.failures[0]}\n${run.describe()}` }
  for (const { label, mode } of restartModes(seed * 7919 + (Number.isFinite(cutAt) ? cutAt : 0))) {
    const problem = await run.restart(mode)
    if (problem !== undefined) return { requests: run.requests, failure: `${where}, restart "${label}": ${problem}\n${run.describe()}` }
  }
  return { requests: run.requests }
}
