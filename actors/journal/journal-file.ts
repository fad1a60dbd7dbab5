// actors/journal/journal-file.ts: appends journal entries to a JSON Lines file, in order,
// batching the lines of one turn of the event loop into one write. A failed write is kept
// and reported by every later call (never silently lost). An existing regular file is never
// replaced unless the caller says so.
import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { SnapcowError } from '../../io/errors.js'
import type { JournalEntry } from './journal.js'

/** What openOrigin does when the journal file already exists: refuse (default) or replace it. */
export type JournalIfExists = 'fail' | 'overwrite'

export class JournalFile {
  #lines: string[] = []
  #writing: Promise<void> = Promise.resolve()
  #scheduled = false
  #error: SnapcowError | undefined

  private constructor(readonly path: string, private readonly handle: FileHandle) {}

  /**
   * Creates the file ('wx': no race with another creator). An existing regular file is refused
   * unless `ifExists` is 'overwrite'; a device or pipe (/dev/stdout, a FIFO) is written as it is.
   * Rejects with SNAPCOW_JOURNAL if the file cannot be opened.
   */
  static async create(path: string, ifExists: JournalIfExists = 'fail'): Promise<JournalFile> {
    try {
      if (ifExists === 'overwrite') return new JournalFile(path, await open(path, 'w'))
      try {
        return new JournalFile(path, await open(path, 'wx'))
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }
      // It exists: open without truncating, and keep it only if it is not a regular file.
      const handle = await open(path, constants.O_WRONLY)
      if ((await handle.stat().catch(async (error: unknown) => { await handle.close(); throw error })).isFile()) {
        await handle.close()
        throw new SnapcowError('SNAPCOW_JOURNAL',
          `journal file ${path} already exists: pass journal: { path, ifExists: 'overwrite' } to replace it, or choose another path`)
      }
      return new JournalFile(path, handle)
    } catch (cause) {
      if (cause instanceof SnapcowError) throw cause
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
