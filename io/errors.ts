// io/errors.ts: snapcow's operational errors. Misuse (bad offsets, bad arguments) throws the
// built-in RangeError or TypeError instead. Codes are stable and listed in docs/errors.md;
// messages may change.

/** Every stable error code snapcow uses. */
export type SnapcowErrorCode =
  | 'SNAPCOW_DEVICE_CLOSED'
  | 'SNAPCOW_READ_ONLY'
  | 'SNAPCOW_IO'
  | 'SNAPCOW_NO_STORE'
  | 'SNAPCOW_BAD_MAGIC'
  | 'SNAPCOW_BAD_VERSION'
  | 'SNAPCOW_BAD_CHUNK_SIZE'
  | 'SNAPCOW_COW_TOO_SMALL'
  | 'SNAPCOW_CORRUPT_TABLE'
  | 'SNAPCOW_INVALID'
  | 'SNAPCOW_OVERFLOW'
  | 'SNAPCOW_DETACHED'
  | 'SNAPCOW_STORE_EXISTS'
  | 'SNAPCOW_MERGING'
  | 'SNAPCOW_MERGE_FAILED'
  | 'SNAPCOW_JOURNAL'
  | 'SNAPCOW_REPLAY_DIVERGED'
  | 'SNAPCOW_INTERNAL'
  | 'SNAPCOW_BUSY'
  | 'SNAPCOW_CHUNK_SIZE_MISMATCH'
  | 'SNAPCOW_TLS_CREDENTIALS'

/**
 * An operational failure with a stable `code`.
 * @example
 * try { await readCowStore(cow) } catch (e) { if (e instanceof SnapcowError) console.log(e.code) }
 */
export class SnapcowError extends Error {
  readonly code: SnapcowErrorCode
  constructor(code: SnapcowErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SnapcowError'
    this.code = code
  }
}

/** Where in a COW store a bad value was found. */
export interface CowFormatLocation {
  /** Metadata area index, for a bad exception record. */
  area?: number
  /** Record slot inside that area. */
  slot?: number
}

/**
 * A COW store that cannot be loaded or created: names the field at fault and its value.
 * Nothing was written when this is thrown.
 * @example
 * catch (e) { if (e instanceof CowFormatError && e.code === 'SNAPCOW_BAD_MAGIC') console.log(e.field, e.value) }
 */
export class CowFormatError extends SnapcowError {
  readonly field: string
  readonly value: number | string
  readonly area: number | undefined
  readonly slot: number | undefined
  constructor(
    code: SnapcowErrorCode,
    field: string,
    value: number | string,
    message: string,
    location: CowFormatLocation = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, options)
    this.name = 'CowFormatError'
    this.field = field
    this.value = value
    this.area = location.area
    this.slot = location.slot
  }
}
