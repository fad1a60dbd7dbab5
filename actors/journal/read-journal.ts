// actors/journal/read-journal.ts: reads a JSON Lines journal file back (api.md), checking each
// line: valid JSON, an object with a `type`, and sequence numbers 1, 2, 3, … A truncated or
// corrupt file is an error that names the line.
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { SnapcowError } from '../../io/errors.js'
import type { JournalEntry } from './journal.js'

/**
 * The entries of a journal file, in order.
 * @example
 * for await (const entry of readJournal('run.jsonl')) console.log(entry.seq, entry.type)
 */
export async function* readJournal(path: string): AsyncIterable<JournalEntry> {
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY })
  let line = 0
  try {
    for await (const text of lines) {
      line++
      let entry: unknown
      try {
        entry = JSON.parse(text)
      } catch {
        throw corrupt(path, line, `is not JSON (${text.length > 40 ? `${text.slice(0, 40)}…` : text}): truncated or corrupt`)
      }
      if (typeof entry !== 'object' || entry === null || typeof (entry as JournalEntry).type !== 'string') {
        throw corrupt(path, line, 'is not a journal entry (an object with a "type")')
      }
      if ((entry as JournalEntry).seq !== line) {
        throw corrupt(path, line, `has seq ${String((entry as JournalEntry).seq)}, expected ${line}: entries are missing or out of order`)
      }
      yield entry as JournalEntry
    }
  } catch (error) {
    if (error instanceof SnapcowError) throw error
    throw new SnapcowError('SNAPCOW_JOURNAL', `cannot read journal ${path}: ${(error as Error).message}`, { cause: error })
  } finally {
    lines.close()
  }
}

const corrupt = (path: string, line: number, why: string) =>
  new SnapcowError('SNAPCOW_JOURNAL', `journal ${path}, line ${line} ${why}`)
