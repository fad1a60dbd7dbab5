// actors/engine.ts: the core that routes every bio of one origin and its snapshots (spec §5)
// and carries out the commands the chunk machines emit (§4). Device completions come back as
// events on one RxJS Subject (architecture rule 1). Reactions are synchronous, so the order of
// device completions alone decides every interleaving.
import { Subject } from 'rxjs'
import type { BlockDevice } from '../io/block-device.js'
import type { ByteOffset, OldChunk } from '../io/units.js'
import { asByteOffset } from '../io/units.js'
import type { ChunkCommand, ChunkEvent } from '../machines/chunk.js'
import type { ChunkInspector, ChunkRuntime } from '../machines/chunk-run.js'
import { xstateRuntime } from '../machines/chunk-run.js'
import { compiledRuntime } from '../machines/compiled-runtime.js'
import { Admission } from './admission.js'
import type { OriginWriteBio, SnapshotWriteBio } from './bio.js'
import { newBioId } from './bio.js'
import { PendingException } from './chunk-pending.js'
import type { CopyJob } from './copier.js'
import { copyChunks } from './copier.js'
import { BufferPool } from './buffer-pool.js'
import { readMergingVolume, writeMergingChunk } from './merging-volume.js'
import { invalidError, overflowError } from './volume-errors.js'
import { forEachPiece, settleAll } from './pieces.js'
import type { CoreEvent } from './events.js'
import type { Journal } from './journal/journal.js'
import type { SnapshotCore } from './snapshot-core.js'

/** @internal Deliberately broken orderings, for the tests that prove each order matters. */
export interface EngineFaults {
  /** Hand each exception to the store when its copy finishes, not in allocation order. */
  commitOutOfOrder?: boolean
  /** Let an origin write through without waiting for the copy and commit. */
  originWriteBeforeCommit?: boolean
  /** Remove the pending exception as soon as it is committed, before reads drain. */
  removePendingBeforeDrain?: boolean
  /** Insert the completed exception only once reads have drained (pre-65fc7c37). */
  insertAfterDrain?: boolean
}

/** XState's `inspect` option: an observer of inspection events, or a function. */
export type InspectionObserver = ChunkInspector

export interface EngineOptions {
  /** XState's inspect observer, given to every chunk actor (or those `inspectChunks` picks). */
  inspect?: InspectionObserver
  /** Inspect only these chunk actors (inspection costs per event); default: all. */
  inspectChunks?: (snapshotId: string, chunk: number) => boolean
  /** Copies in flight per snapshot before new writes wait (the kernel's default is 2048). */
  cowThreshold?: number
  /**
   * How chunk machines run: `'compiled'` (default), the table compiled from the machine, well
   * under a microsecond a lifecycle; or `'xstate'`, every chunk a real XState actor. Chunks
   * that `inspect` watches run as XState actors either way, so the inspector sees them.
   */
  executor?: 'compiled' | 'xstate'
  /** @internal */
  faults?: EngineFaults
}

/**
 * The executor when `openOrigin` names none: the compiled table, unless the environment
 * variable SNAPCOW_EXECUTOR says `xstate` (how CI runs the engine suite under both).
 */
const DEFAULT_EXECUTOR: 'compiled' | 'xstate' =
  (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SNAPCOW_EXECUTOR === 'xstate' ? 'xstate' : 'compiled'

/** How often the `valid = 0` header write of an invalidation is tried before giving up. */
const INVALIDATE_ATTEMPTS = 3

export class Engine {
  /** Completions, as events the core reacts to, in the order they happened. */
  readonly events$ = new Subject<CoreEvent>()
  readonly admission: Admission
  /** Visiting order of spec §5.2: decreasing chunk size, then earlier activation first. */
  #snapshots: SnapshotCore[] = []
  readonly #byId = new Map<string, SnapshotCore>()
  readonly #faults: EngineFaults
  readonly #cowThreshold: number
  /** Header rewrites of invalidations not yet durable (origin writes wait for them). */
  readonly #invalidations = new Set<Promise<void>>()
  readonly #finishedWaiters: Array<() => void> = []
  /** The two executors behind the one seam (machines/chunk-run.ts). */
  readonly #executor: 'compiled' | 'xstate'
  readonly #compiled: ChunkRuntime
  readonly #xstate: ChunkRuntime
  readonly #inspected: ChunkRuntime | undefined
  /** Command lists by nesting depth of #send (carrying out a command may send to another chunk). */
  readonly #outs: ChunkCommand[][] = []
  #depth = 0

  /** @internal A snapshot whose merge() is taking over (before `merge` is set on it). */
  mergeReserved: SnapshotCore | undefined
  /** @internal Set by the origin volume when a journal is on: transitions, commands, events. */
  journal: Journal | undefined

  constructor(readonly origin: BlockDevice, private readonly options: EngineOptions = {}) {
    this.#faults = options.faults ?? {}
    this.#cowThreshold = options.cowThreshold ?? 2048
    if (options.executor !== undefined && options.executor !== 'compiled' && options.executor !== 'xstate') {
      throw new TypeError(`executor must be 'compiled' or 'xstate', got ${String(options.executor)}`)
    }
    this.#executor = options.executor ?? DEFAULT_EXECUTOR
    this.#compiled = compiledRuntime()
    this.#xstate = xstateRuntime()
    this.#inspected = options.inspect !== undefined ? xstateRuntime({ inspect: options.inspect }) : undefined
    this.admission = new Admission(() => this.#snapshots.some((s) => s.copiesInFlight >= this.#cowThreshold))
    this.events$.subscribe((event) => this.#react(event))
  }

  get snapshots(): readonly SnapshotCore[] {
    return this.#snapshots
  }

  /**
   * Adds a snapshot while no origin write is in flight (spec §2 activation). `check` runs at
   * that instant and may refuse the activation by throwing.
   */
  async activate(snapshot: SnapshotCore, check?: () => void): Promise<void> {
    await this.admission.quiesce()
    try {
      check?.()
      this.#byId.set(snapshot.id, snapshot)
      this.#snapshots = [...this.#snapshots, snapshot]
        .sort((a, b) => b.chunkSectors - a.chunkSectors || a.activation - b.activation)
    } finally {
      this.admission.resume()
    }
  }

  /** Removes a quiescent snapshot from origin writes. */
  detach(snapshot: SnapshotCore): void {
    snapshot.detached = true
    this.#snapshots = this.#snapshots.filter((s) => s !== snapshot)
    this.#byId.delete(snapshot.id)
    this.admission.wake()
  }

  // ---- origin writes (spec §5.2) ----

  /**
   * An origin write (spec §5.2): cut at the smallest chunk size of the snapshots that take
   * part, each piece run through the protocol. A write that needs no copy costs one table
   * probe per snapshot plus the device call.
   */
  writeOrigin(offset: number, data: Uint8Array): Promise<void> {
    if (this.admission.closed) return this.admission.whenOpen().then(() => this.writeOrigin(offset, data))
    this.admission.originWriteStarted()
    let step = 0
    for (const s of this.#snapshots) {
      if ((s.participates || s.redirectsOrigin) && (step === 0 || s.chunkBytes < step)) step = s.chunkBytes
    }
    const written = step === 0 ? this.writeOriginDevice(offset, data) : forEachPiece(offset, data, step, this.#originPiece, undefined)
    return written.then(this.#originWriteDone, this.#originWriteFailed)
  }

  readonly #originWriteDone = (): void => this.admission.originWriteFinished()
  readonly #originWriteFailed = (error: unknown): never => {
    this.admission.originWriteFinished()
    throw error
  }

  readonly #originPiece = (_: undefined, offset: ByteOffset, data: Uint8Array): Promise<void> => this.#writeOriginPiece(offset, data)

  #writeOriginPiece(offset: ByteOffset, data: Uint8Array): Promise<void> {
    const merging = this.#merging
    if (merging?.redirectsOrigin) {
      const chunk = merging.chunkOf(offset)
      const newChunk = merging.completed.get(chunk)
      if (newChunk !== undefined) return writeMergingChunk(merging, chunk, newChunk, offset, data)
    }
    if (this.#everySnapshotSafe(offset)) return this.writeOriginDevice(offset, data) // the hot path
    return new Promise((resolve, reject) => {
      const bio: OriginWriteBio = { kind: 'origin-write', id: newBioId(), offset, data,
        done: (error) => (error === undefined ? resolve() : reject(error)) }
      // Spec §16: a piece that may start a copy waits while a snapshot is at the threshold.
      if (this.admission.copyMustWait) this.admission.queueForCopy(() => this.#runOriginWrite(bio))
      else this.#runOriginWrite(bio)
    })
  }

  /**
   * The one gate every write to the origin device passes, fast paths, re-runs and merge
   * batches alike (spec §13): while an invalidated snapshot's `valid = 0` header is not yet
   * durable, nothing may overwrite an origin chunk, or a crash could bring that snapshot back
   * as valid over data it never copied.
   */
  writeOriginDevice(offset: number, data: Uint8Array): Promise<void> {
    if (this.#invalidations.size === 0) return this.origin.write(offset, data)
    return Promise.all(this.#invalidations).then(() => this.writeOriginDevice(offset, data))
  }

  /**
   * Spec §5.5: a flush of the origin makes every acknowledged origin write durable, wherever
   * it went: while a snapshot merges, writes to its chunks went to its COW device.
   */
  flushOrigin(): Promise<void> {
    const merging = this.#merging
    if (merging === undefined || !merging.redirectsOrigin) return this.origin.flush()
    return settleAll([this.origin.flush(), merging.cow.flush()])
  }

  /** The snapshot being merged into the origin, if any (one per origin, spec §15). */
  get #merging(): SnapshotCore | undefined {
    for (const s of this.#snapshots) if (s.merge !== undefined && s.merge.status !== 'merged') return s
    return undefined
  }

  /** Public view of the merging snapshot, for merge() and the volumes. */
  get merging(): SnapshotCore | undefined {
    return this.#merging
  }

  /** Origin reads: straight to the device (§5.1), or as the merging volume reads (§12). */
  readOrigin(offset: number, into: Uint8Array): Promise<void> {
    const s = this.#merging
    if (s === undefined || !s.redirectsOrigin) return this.origin.read(offset, into)
    return readMergingVolume(this.origin, s, offset, into)
  }

  /** Resolves the next time any exception of any snapshot finishes (merge waits on it, §12 step 3). */
  exceptionFinished(): Promise<void> {
    return new Promise((resolve) => this.#finishedWaiters.push(resolve))
  }

  /** @internal Re-runs an origin write through the protocol (a held merge write, released). */
  resubmitOriginWrite(bio: OriginWriteBio): void {
    this.#runOriginWrite(bio)
  }

  /** True when every participating snapshot has the chunk in Completed (state D). */
  #everySnapshotSafe(offset: number): boolean {
    for (const s of this.#snapshots) {
      if (!s.participates) continue
      const chunk = s.chunkOf(offset)
      if (s.pending.has(chunk) || !s.completed.has(chunk)) return false
    }
    return true
  }

  /** Steps 1–5 of spec §5.2 for one bio; re-run when the exception holding it finishes. */
  #runOriginWrite(bio: OriginWriteBio): void {
    const { held } = this.originPass(bio.offset, bio)
    if (held) return
    this.writeOriginDevice(bio.offset, bio.data).then(() => bio.done(), (error: Error) => bio.done(error))
  }

  /**
   * One pass of the origin-write protocol over every snapshot, for a bio or (merge, §12
   * step 3) for none. Returns whether the bio was held, or what it must wait for.
   */
  originPass(offset: number, bio: OriginWriteBio | undefined): { held: boolean } {
    const copies: CopyJob[] = []
    let held = false
    let holder: CopyJob | undefined
    for (const s of this.#snapshots) {
      if (!s.participates) continue
      const chunk = s.chunkOf(offset)
      let pe = s.pending.get(chunk)
      const offered = held ? undefined : bio
      let heldHere: boolean
      if (pe === undefined) {
        if (s.completed.has(chunk)) continue // D: nothing to do for s
        pe = this.#newPending(s, chunk)
        const newChunk = s.store.allocate()
        if (newChunk !== undefined) s.sequence(pe, newChunk)
        heldHere = this.#send(s, pe, { type: 'origin-write', bio: offered, newChunk }, copies) // rows 1, 2
      } else {
        heldHere = this.#send(s, pe, { type: 'origin-write', bio: offered }, copies)
      }
      if (heldHere) {
        held = true
        const on = pe
        holder = copies.find((job) => job.pe === on)
      }
    }
    // Give the other exceptions a head start: the one holding the bio starts last.
    if (holder !== undefined) copies.splice(copies.indexOf(holder), 1).forEach((job) => copies.push(job))
    if (copies.length > 0) this.#startCopies(copies)
    return { held }
  }

  // ---- snapshot I/O (spec §5.3, §5.4) ----

  /** A snapshot read (spec §5.3), cut at the snapshot's chunks. */
  readSnapshot(s: SnapshotCore, offset: number, into: Uint8Array): Promise<void> {
    return forEachPiece(offset, into, s.chunkBytes, this.#readPiece, s)
  }

  // Made once per engine, so that cutting a request allocates no closure.
  readonly #readPiece = (s: SnapshotCore, offset: ByteOffset, into: Uint8Array): Promise<void> => this.#readSnapshotPiece(s, offset, into)
  readonly #writePiece = (s: SnapshotCore, offset: ByteOffset, data: Uint8Array): Promise<void> => this.#writeSnapshotPiece(s, offset, data)

  /** One piece: a remapped chunk is one table probe plus the COW read. */
  #readSnapshotPiece(s: SnapshotCore, offset: ByteOffset, into: Uint8Array): Promise<void> {
    if (!s.valid) return Promise.reject(invalidError(s))
    const chunk = s.chunkOf(offset)
    const newChunk = s.completed.get(chunk)
    if (newChunk !== undefined) { // C or D (rows 14, 17): the completed table is looked at first
      return s.cow.read(newChunk * s.chunkBytes + (offset - chunk * s.chunkBytes), into)
    }
    return this.#readThroughToOrigin(s, chunk, offset, into)
  }

  /** A or B (row 6): from the origin, tracked until it finishes. */
  async #readThroughToOrigin(s: SnapshotCore, chunk: OldChunk, offset: number, into: Uint8Array): Promise<void> {
    s.reads.track(chunk)
    try {
      await this.origin.read(offset, into)
      // Invalidated meanwhile: origin writes stopped waiting for this read, so what it read
      // may be newer than the snapshot. Never return that as the snapshot's content.
      if (!s.valid) throw invalidError(s)
    } finally {
      if (s.reads.untrack(chunk) && s.live.get(chunk)?.state === 'CompletedWithReaders') {
        this.events$.next({ type: 'read-drained', snapshotId: s.id, oldChunk: chunk })
      }
    }
  }

  /** A snapshot write (spec §5.4), cut at the snapshot's chunks; the volume has passed the admission gate. */
  writeSnapshot(s: SnapshotCore, offset: number, data: Uint8Array): Promise<void> {
    return forEachPiece(offset, data, s.chunkBytes, this.#writePiece, s)
  }

  /** One piece: a remapped chunk is one table probe plus the COW write. */
  #writeSnapshotPiece(s: SnapshotCore, offset: ByteOffset, data: Uint8Array): Promise<void> {
    if (!s.valid) return Promise.reject(invalidError(s))
    if (s.overflowed) return Promise.reject(overflowError(s))
    const chunk = s.chunkOf(offset)
    const newChunk = s.completed.get(chunk)
    if (newChunk !== undefined) { // rows 14, 17
      return s.cow.write(newChunk * s.chunkBytes + (offset - chunk * s.chunkBytes), data)
    }
    return new Promise((resolve, reject) => {
      const bio: SnapshotWriteBio = { kind: 'snapshot-write', id: newBioId(), offset, data,
        done: (error) => (error === undefined ? resolve() : reject(error)) }
      this.#routeSnapshotWrite(s, bio)
    })
  }

  /** Rows 3–5 and 8 for a snapshot write that found no completed exception. */
  #routeSnapshotWrite(s: SnapshotCore, bio: SnapshotWriteBio, mayWait = true): void {
    if (!s.valid) return bio.done(invalidError(s))
    if (s.overflowed) return bio.done(overflowError(s))
    const chunk = s.chunkOf(bio.offset)
    const newChunk = s.completed.get(chunk)
    if (newChunk !== undefined) { // completed while it waited for the copy threshold
      s.cow.write(newChunk * s.chunkBytes + (bio.offset - chunk * s.chunkBytes), bio.data).then(() => bio.done(), (e: Error) => bio.done(e))
      return
    }
    const pe = s.pending.get(chunk)
    if (pe !== undefined) {
      this.#send(s, pe, { type: 'snapshot-write', bio, wholeChunk: false, overflowAllowed: s.overflowAllowed }) // row 8
      return
    }
    // Spec §16: a write that starts a copy waits while a snapshot is at the threshold.
    if (mayWait && this.admission.copyMustWait) return this.admission.queueForCopy(() => this.#routeSnapshotWrite(s, bio, false))
    const fresh = this.#newPending(s, chunk)
    const allocated = s.store.allocate()
    if (allocated !== undefined) s.sequence(fresh, allocated)
    this.#send(s, fresh, { type: 'snapshot-write', bio, newChunk: allocated,
      wholeChunk: bio.data.length === s.chunkBytes, overflowAllowed: s.overflowAllowed }) // rows 3-5
    if (allocated === undefined) bio.done(s.overflowed && s.valid ? overflowError(s) : invalidError(s))
  }

  // ---- chunk actors and their commands ----

  #newPending(s: SnapshotCore, chunk: OldChunk): PendingException {
    // Inspected chunks run as real XState actors, whatever the executor, so the inspector sees them.
    const runtime = this.#inspected !== undefined && (this.options.inspectChunks?.(s.id, chunk) ?? true) ? this.#inspected
      : this.#executor === 'xstate' ? this.#xstate : this.#compiled
    return new PendingException(chunk, runtime({ snapshotId: s.id, oldChunk: chunk }))
  }

  /**
   * Sends an event to a chunk's machine and carries out the commands it emits, in order; then
   * files or drops the exception by the state it ends in. Returns whether a command held the
   * origin bio. Copies go to `copies` when an origin-write pass starts them all at its end.
   */
  #send(s: SnapshotCore, pe: PendingException, event: ChunkEvent, copies?: CopyJob[]): boolean {
    const from = this.journal?.enabled ? pe.state : undefined
    const out = this.#outs[this.#depth] ??= []
    this.#depth++
    let held = false
    try {
      pe.run.send(event, out)
      for (let i = 0; i < out.length; i++) {
        if (this.#carryOut(s, pe, out[i]!, copies)) held = true
      }
    } finally {
      out.length = 0
      this.#depth--
    }
    const state = pe.state
    if (from !== undefined) {
      this.journal!.record({ type: 'chunk', snapshot: s.id, chunk: pe.oldChunk, event: event.type, from, to: state })
    }
    if (state === 'Pending' || state === 'CompletedWithReaders') {
      if (!s.live.has(pe.oldChunk)) { // just created: into the pending table (spec §3 state B)
        s.live.set(pe.oldChunk, pe)
        s.pending.set(pe.oldChunk, pe)
      }
      return held
    }
    pe.run.stop() // None (failed or no room) or Completed: no live machine (architecture rule 3)
    if (s.live.get(pe.oldChunk) === pe) s.live.delete(pe.oldChunk)
    s.settled()
    for (const wake of this.#finishedWaiters.splice(0)) wake()
    return held
  }

  /** Carries out one command; returns true when it held the origin bio. */
  #carryOut(s: SnapshotCore, pe: PendingException, command: ChunkCommand, copies: CopyJob[] | undefined): boolean {
    this.journal?.record({ type: 'command', snapshot: s.id, chunk: pe.oldChunk, command: command.type })
    switch (command.type) {
      case 'copy':
        s.copiesInFlight++
        if (copies !== undefined) copies.push({ snapshot: s, pe })
        else this.#startCopies([{ snapshot: s, pe }])
        return false
      case 'write-full':
        s.copiesInFlight++
        pe.fullBio = command.bio as SnapshotWriteBio
        s.cow.write(command.newChunk * s.chunkBytes, pe.fullBio.data).then(
          () => this.#copyDone({ snapshot: s, pe }, true), () => this.#copyDone({ snapshot: s, pe }, false))
        return false
      case 'hold-origin-write':
        if (this.#faults.originWriteBeforeCommit) return false
        pe.originBios.push(command.bio as OriginWriteBio)
        return true
      case 'hold-snapshot-write':
        pe.snapshotBios.push(command.bio as SnapshotWriteBio)
        return false
      case 'commit':
        if (this.#faults.commitOutOfOrder) this.#commit(s, pe, command.copyOk)
        else for (const ready of s.copyFinished(pe, command.copyOk)) this.#commit(s, ready, ready.copyOk)
        return false
      case 'insert-completed':
        if (!this.#faults.insertAfterDrain) s.completed.set(command.oldChunk, command.newChunk)
        if (this.#faults.removePendingBeforeDrain) this.#removePending(s, pe)
        return false
      case 'remove-pending':
        this.#removePending(s, pe)
        return false
      case 'release':
        if (this.#faults.insertAfterDrain) s.completed.set(command.oldChunk, command.newChunk)
        this.#release(s, pe)
        return false
      case 'fail-held':
        this.#failHeld(s, pe)
        return false
      case 'invalidate':
        this.invalidate(s, command.reason)
        return false
      case 'overflow':
        s.overflowed = true
        return false
    }
  }

  #removePending(s: SnapshotCore, pe: PendingException): void {
    pe.removed = true
    if (s.pending.get(pe.oldChunk) === pe) s.pending.delete(pe.oldChunk)
  }

  #startCopies(jobs: CopyJob[]): void {
    void copyChunks(this.origin, jobs, this.#copyDoneCallback, this.#buffers)
  }

  readonly #buffers = new BufferPool()
  readonly #copyDoneCallback = (job: CopyJob, ok: boolean): void => this.#copyDone(job, ok)

  #copyDone(job: CopyJob, ok: boolean): void {
    job.snapshot.copiesInFlight--
    this.events$.next({ type: 'copy-done', snapshotId: job.snapshot.id, oldChunk: job.pe.oldChunk, ok })
    this.admission.wake()
  }

  #commit(s: SnapshotCore, pe: PendingException, copyOk: boolean): void {
    // The store resolves false on an I/O failure; a rejection is a bug (e.g. a commit out of
    // allocation order). Both make the snapshot unusable, but a bug is reported as one
    // (SNAPCOW_INTERNAL), never disguised as an ordinary Invalid snapshot.
    s.store.commit(pe.oldChunk, pe.newChunk!, copyOk).then(
      (ok) => this.events$.next({ type: 'commit-done', snapshotId: s.id, oldChunk: pe.oldChunk, ok }),
      (error: unknown) => {
        s.internalError ??= error instanceof Error ? error : new Error(String(error))
        this.events$.next({ type: 'commit-done', snapshotId: s.id, oldChunk: pe.oldChunk, ok: false })
      })
  }

  /** Row 12: acknowledge the full-chunk write, submit held snapshot writes, re-run origin writes. */
  #release(s: SnapshotCore, pe: PendingException): void {
    const base = pe.newChunk! * s.chunkBytes
    pe.fullBio?.done()
    for (const bio of pe.snapshotBios.splice(0)) {
      s.cow.write(base + (bio.offset - pe.oldChunk * s.chunkBytes), bio.data).then(() => bio.done(), (e: Error) => bio.done(e))
    }
    for (const bio of pe.originBios.splice(0)) this.#runOriginWrite(bio)
  }

  /** Row 13: fail what waited to be written into the snapshot; origin writes go round again. */
  #failHeld(s: SnapshotCore, pe: PendingException): void {
    pe.fullBio?.done(invalidError(s))
    for (const bio of pe.snapshotBios.splice(0)) bio.done(invalidError(s))
    for (const bio of pe.originBios.splice(0)) this.#runOriginWrite(bio)
  }

  /** Spec §13: Invalid for good; the persistent header says so before origin writes go on. */
  invalidate(s: SnapshotCore, reason: string): void {
    if (!s.valid) return
    s.valid = false
    s.invalidReason = s.internalError !== undefined ? `internal error: ${s.internalError.message}` : reason
    const written: Promise<void> = this.#markInvalidOnDisk(s).then(() => { this.#invalidations.delete(written) })
    this.#invalidations.add(written)
    s.invalidation = written
  }

  /**
   * Writes the `valid = 0` header (spec §9.7), trying again if the COW device refuses. Origin
   * writes stay gated meanwhile. If every attempt fails the store is unusable: the failure is
   * kept for `status()` and journaled, never swallowed, and origin writes go on (the kernel
   * only warns here; holding them for good would take the origin down with its snapshot).
   */
  async #markInvalidOnDisk(s: SnapshotCore): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await s.store.invalidate()
        return
      } catch (error) {
        if (attempt < INVALIDATE_ATTEMPTS) continue
        s.invalidationError = error instanceof Error ? error : new Error(String(error))
        const code = (error as { code?: unknown }).code
        this.journal?.record({ type: 'invalidation-failed', snapshot: s.id, attempts: attempt,
          error: typeof code === 'string' ? code : s.invalidationError.name })
        return
      }
    }
  }

  // ---- events (architecture rule 1) ----

  #react(event: CoreEvent): void {
    if (this.journal?.enabled) {
      this.journal.record({ type: event.type, snapshot: event.snapshotId, chunk: event.oldChunk, ...('ok' in event ? { ok: event.ok } : {}) })
    }
    const s = this.#byId.get(event.snapshotId)
    const pe = s?.live.get(event.oldChunk)
    if (s === undefined || pe === undefined) return
    switch (event.type) {
      case 'copy-done':
        this.#send(s, pe, { type: 'copy-done', ok: event.ok })
        return
      case 'commit-done':
        this.#send(s, pe, { type: 'commit-done', ok: event.ok && s.valid, readers: s.reads.count(event.oldChunk) })
        return
      case 'read-drained':
        if (pe.state === 'CompletedWithReaders') this.#send(s, pe, { type: 'read-drained' })
        return
    }
  }
}

