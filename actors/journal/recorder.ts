// actors/journal/recorder.ts: puts the engine's inputs through the sequencer and into the
// journal. In record mode the devices are real and their completions become `complete`
// inputs; in replay mode the devices do the same I/O on the images given to replay(), but a
// request completes only when the replayed journal says so, failing (if it failed) with the
// recorded code.
import type { BlockDevice } from '../../io/block-device.js'
import type { Journal, NewEntry } from './journal.js'
import { errorCode, ReplayedDeviceError } from './replayed-device-error.js'
import { Sequencer } from './sequencer.js'

type Settle = { resolve: () => void; reject: (error: unknown) => void }

export class Recorder {
  readonly sequencer = new Sequencer()
  #requests = 0
  #bios = 0
  readonly #awaitingReplay = new Map<number, Settle>()

  constructor(readonly journal: Journal, readonly replaying: boolean) {}

  /**
   * Takes one caller request as an input: in its turn it is journaled and started; its
   * outcome is journaled when it settles. `describe` gets the bio id.
   */
  request<T>(describe: (bio: number) => NewEntry, run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.sequencer.enqueue(() => {
        const bio = ++this.#bios
        this.journal.record(describe(bio))
        let started: Promise<T>
        try {
          started = run()
        } catch (error) {
          started = Promise.reject(error)
        }
        started.then((value) => {
          this.journal.record({ type: 'done', bio, ok: true })
          resolve(value)
        }, (error: unknown) => {
          this.journal.record({ type: 'done', bio, ok: false, error: errorCode(error) })
          reject(error)
        })
      })
    })
  }

  /** A device whose requests are journaled and whose completions are inputs. */
  wrap(device: BlockDevice, name: string): BlockDevice {
    const submit = (op: 'read' | 'write' | 'flush', offset: number, length: number, io: () => Promise<void>): Promise<void> => {
      const req = ++this.#requests
      this.journal.record({ type: 'submit', req, device: name, op, offset, length })
      const done = io() // takes effect now, in submission order, in both modes
      return new Promise<void>((resolve, reject) => {
        const settle: Settle = { resolve, reject }
        if (this.replaying) {
          done.catch(() => undefined)
          this.#awaitingReplay.set(req, settle)
          return
        }
        done.then(() => this.#complete(req, settle), (error: unknown) => this.#complete(req, settle, { error, code: errorCode(error) }))
      })
    }
    return {
      get size() { return device.size },
      supports: device.supports,
      read: (offset, buffer) => submit('read', offset, buffer.length, () => device.read(offset, buffer)),
      write: (offset, data) => submit('write', offset, data.length, () => device.write(offset, data)),
      flush: () => submit('flush', 0, 0, () => device.flush()),
      close: () => device.close(),
    } satisfies BlockDevice
  }

  /**
   * Journals a completion, in its turn, and settles the request. A failure's `code` goes on
   * the entry (absent only when replaying a journal recorded before failures had one).
   */
  #complete(req: number, settle: Settle, failure?: { error: unknown; code: string | undefined }): void {
    this.sequencer.enqueue(() => {
      if (failure === undefined) {
        this.journal.record({ type: 'complete', req, ok: true })
        settle.resolve()
        return
      }
      this.journal.record({ type: 'complete', req, ok: false, ...(failure.code === undefined ? {} : { error: failure.code }) })
      settle.reject(failure.error)
    })
  }

  /**
   * Replay: completes request `req` as the journal recorded it, in its turn; a failure rejects
   * with a ReplayedDeviceError carrying the recorded `error` code (a plain Error for a journal
   * that recorded none). False if `req` is not waiting.
   */
  replayComplete(req: number, ok: boolean, error: string | undefined): boolean {
    const settle = this.#awaitingReplay.get(req)
    if (settle === undefined) return false
    this.#awaitingReplay.delete(req)
    if (ok) this.#complete(req, settle)
    else this.#complete(req, settle, error === undefined
      ? { error: new Error(`request ${req} failed (replayed)`), code: undefined }
      : { error: new ReplayedDeviceError(req, error), code: error })
    return true
  }

  /** Replay: true once request `req` has been submitted and waits for its completion. */
  submitted(req: number): boolean {
    return this.#awaitingReplay.has(req)
  }
}
