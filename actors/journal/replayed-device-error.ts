// actors/journal/replayed-device-error.ts: the error a replay fails a device request with,
// carrying the code (or name) the journal recorded for the original failure, and the one
// rule for what is recorded: an error's string `code`, else its `name`.

/**
 * How a failure is named in the journal (`complete` and `done` entries): the error's `code`
 * when it is a string (a SnapcowError's, or a Node errno code such as `EIO`), else its `name`.
 */
export function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const { code, name } = error as { code?: unknown; name?: unknown }
    if (typeof code === 'string') return code
    if (typeof name === 'string') return name
  }
  return 'Error'
}

/**
 * A device request that failed in the recorded run, failed again by replay(): `code` is the
 * recorded one (a SnapcowErrorCode such as `SNAPCOW_IO`, a Node code such as `EIO`, or the
 * name of an error that had no code), so everything that reports it says the same.
 * @example
 * catch (e) { if (e instanceof ReplayedDeviceError) console.log(e.req, e.code) }
 */
export class ReplayedDeviceError extends Error {
  readonly code: string
  constructor(readonly req: number, code: string) {
    super(`device request ${req} failed with ${code} in the recorded run (replayed)`)
    this.name = 'ReplayedDeviceError'
    this.code = code
  }
}
