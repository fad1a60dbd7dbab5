// cli/fail.ts: the program's two kinds of error (usage: exit 2, failure: exit 1) and how a
// library error becomes one line naming the file and the problem.
import { SnapcowError } from '../index.js'

/** An error the program reports as `snapcow: <file>: <problem>` and exits with `exitCode`. */
export class CliError extends Error {
  constructor(readonly file: string | undefined, message: string, readonly exitCode: 1 | 2 = 1, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
  }
}

export const usage = (file: string | undefined, message: string): CliError => new CliError(file, message, 2)

/** Wraps any error thrown while working on `file`: misuse (RangeError/TypeError) is usage, the rest failure. */
export function about(file: string, error: unknown): CliError {
  if (error instanceof CliError) return error
  if (error instanceof RangeError || error instanceof TypeError) return new CliError(file, error.message, 2, { cause: error })
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT') return new CliError(file, 'no such file', 1, { cause: error })
  if (code === 'EACCES' || code === 'EPERM') return new CliError(file, 'permission denied', 1, { cause: error })
  if (code === 'EADDRINUSE') return new CliError(file, 'address in use: another server listens there', 1, { cause: error })
  if (code === 'EISDIR') return new CliError(file, 'is a directory, not an image file', 1, { cause: error })
  if (error instanceof SnapcowError && error.code === 'SNAPCOW_NO_STORE') {
    return new CliError(file, 'holds no snapshot store (its first 4 bytes are zero): make one with snapcow create', 1, { cause: error })
  }
  if (error instanceof SnapcowError && error.code === 'SNAPCOW_BUSY') return new CliError(file, `in use by another program: ${error.message}`, 1, { cause: error })
  if (error instanceof SnapcowError) return new CliError(file, error.message, 1, { cause: error })
  return new CliError(file, error instanceof Error ? error.message : String(error), 1, { cause: error })
}

/** Runs `work`, naming `file` in whatever it throws. */
export async function on<T>(file: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    throw about(file, error)
  }
}
