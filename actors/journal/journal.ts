// actors/journal/journal.ts: the event-sourcing journal (architecture rule 2). Every input the
// engine consumes and every command and transition it produces gets the next sequence number,
// goes on one RxJS stream, into memory, and (when asked) into a JSON Lines file.
import { Observable, Subject } from 'rxjs'
import type { JournalFile } from './journal-file.js'

/** One journal entry; every type and field is listed in docs/events.md. */
export interface JournalEntry {
  seq: number
  type: string
  [field: string]: unknown
}

/** An entry before it has a sequence number. */
export type NewEntry = { type: string; [field: string]: unknown }

/**
 * The journal of one origin (api.md). Empty unless `openOrigin` was given `journal`.
 * @example
 * const origin = await openOrigin(device, { journal: {} })
 * origin.events$.subscribe((entry) => console.log(entry.seq, entry.type))
 * origin.journal.entries()
 */
export class Journal {
  readonly #entries: JournalEntry[] = []
  #seq = 0

  /** Entries as they are made, from the moment of subscribing on (events$ also gives the earlier ones). */
  readonly entries$ = new Subject<JournalEntry>()

  /**
   * Every entry: first those made so far, in order, then each new one as it is made, each
   * exactly once. Gap-free because both steps run in the one synchronous subscribe call (an
   * entry made meanwhile, by a subscriber's own reaction, is picked up by the loop).
   */
  readonly events$ = new Observable<JournalEntry>((subscriber) => {
    for (let i = 0; i < this.#entries.length && !subscriber.closed; i++) subscriber.next(this.#entries[i]!)
    return subscriber.closed ? undefined : this.entries$.subscribe(subscriber)
  })

  constructor(readonly enabled: boolean, readonly payloads: boolean, private readonly file?: JournalFile) {}

  /** @internal Gives the entry its sequence number and publishes it. */
  record(entry: NewEntry): void {
    if (!this.enabled) return
    const stamped = { seq: ++this.#seq, ...entry } as JournalEntry
    this.#entries.push(stamped)
    this.file?.append(stamped)
    this.entries$.next(stamped)
  }

  /** Every entry so far, in sequence order. */
  entries(): readonly JournalEntry[] {
    return this.#entries
  }

  /** Resolves once every entry is in the file (if any); rejects if the file could not be written. */
  async drain(): Promise<void> {
    await this.file?.drain()
  }
}
