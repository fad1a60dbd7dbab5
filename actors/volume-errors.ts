// actors/volume-errors.ts: the errors a volume's I/O rejects with (spec §13).
import { SnapcowError } from '../io/errors.js'
import type { SnapshotCore } from './snapshot-core.js'

export function invalidError(s: SnapshotCore): SnapcowError {
  if (s.internalError !== undefined) {
    return new SnapcowError('SNAPCOW_INTERNAL',
      `snapshot ${s.id} was stopped by an internal error (a bug in snapcow, please report it): ${s.internalError.message}`,
      { cause: s.internalError })
  }
  return new SnapcowError('SNAPCOW_INVALID',
    `snapshot ${s.id} is invalid (${s.invalidReason ?? 'its store says so'}): its reads and writes fail`)
}

export function overflowError(s: SnapshotCore): SnapcowError {
  return new SnapcowError('SNAPCOW_OVERFLOW',
    `snapshot ${s.id} has overflowed (its COW device is full): writes fail, reads still work`)
}
