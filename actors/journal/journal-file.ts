// actors/journal/journal-file.ts: appends journal entries to a JSON Lines file, in order,
// batching the lines of one turn of the event loop into one write. A failed write is kept
// and reported by every later call (never silently lost).
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { SnapcowError } from '../../io/errors.js'
import type { JournalEntry } from './journal.js'

export class JournalFile {
  #lines: string[] = []
  #writing: Promise<void> = Promise.resolve()
  #scheduled = false
  #error: SnapcowError | undefined

  private constructor(readonly path: string, private readonly handle: FileHandle) {}

  /** Creates (or truncates) the file; rejects with SNAPCOW_JOURNAL if it cannot be opened. */
  static async create(path: string): Promise<JournalFile> {
    try {
      return new JournalFile(path, await open(path, 'w'))
    } catch (cause) {
      throw new SnapcowError('SNAPCOW_JOURNAL', `cannot open journal file ${path}: ${(cause as Error).message}`, { cause })
    }
  }

  /** The write failure, once there is one: the engine refuses further I/O with it. */
  get error(): SnapcowError | undefined {
    return this.#error
  }

  append(entry: JournalEntry): void {
    this.#lines.push(JSON.stringify(entry))
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      const text = this.#lines.join('\n') + '\n'
      this.#lines = []
      this.#writing = this.#writing.then(async () => {
        if (this.#error !== undefined) return
        try {
          await this.handle.write(text)
        } catch (cause) {
          this.#error = new SnapcowError('SNAPCOW_JOURNAL', `writing journal file ${this.path} failed: ${(cause as Error).message}`, { cause })
        }
      })
    })
  }

  async drain(): Promise<void> {
    while (this.#scheduled) await new Promise((resolve) => setImmediate(resolve))
    await this.#writing
    if (this.#error !== undefined) throw this.#error
  }

  async close(): Promise<void> {
    try {
      await this.drain()
    } finally {
      await this.handle.close()
    }
  }
}
