// actors/journal/recorder.ts: puts the engine's inputs through the sequencer and into the
// journal. In record mode the devices are real and their completions become `complete`
// inputs; in replay mode the devices do the same I/O on the images given to replay(), but a
// request completes only when the replayed journal says so.
import type { BlockDevice } from '../../io/block-device.js'
import type { Journal, NewEntry } from './journal.js'
import { Sequencer } from './sequencer.js'

type Settle = { resolve: () => void; reject: (error: Error) => void }

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
        }, (error: Error & { code?: string }) => {
          this.journal.record({ type: 'done', bio, ok: false, error: error.code ?? error.name })
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
        done.then(() => this.#complete(req, true, settle), (error: Error) => this.#complete(req, false, settle, error))
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

  #complete(req: number, ok: boolean, settle: Settle, error?: Error): void {
    this.sequencer.enqueue(() => {
      this.journal.record({ type: 'complete', req, ok })
      if (ok) settle.resolve()
      else settle.reject(error ?? new Error(`request ${req} failed (replayed)`))
    })
  }

  /** Replay: completes request `req` as the journal recorded it, in its turn. False if unknown. */
  replayComplete(req: number, ok: boolean): boolean {
    const settle = this.#awaitingReplay.get(req)
    if (settle === undefined) return false
    this.#awaitingReplay.delete(req)
    this.#complete(req, ok, settle)
    return true
  }

  /** Replay: true once request `req` has been submitted and waits for its completion. */
  submitted(req: number): boolean {
    return this.#awaitingReplay.has(req)
  }
}
