// actors/device-claims.ts: which device objects an open origin holds in this process, as the
// kernel claims a block device exclusively for a snapshot-origin or snapshot target: the origin
// device, and the COW of each snapshot that is being made or is live. A second claim on a
// device is refused with SNAPCOW_BUSY; an origin's claims go when it is closed.
import type { BlockDevice } from '../io/block-device.js'
import { SnapcowError } from '../io/errors.js'

/** What a device is used as, by which holder (an Origin). */
interface Claim {
  holder: object
  role: 'origin' | 'cow'
}

const claims = new WeakMap<BlockDevice, Claim>()
/** Each holder's devices, so closing it releases them all. */
const held = new WeakMap<object, Set<BlockDevice>>()

/**
 * Claims `device` for `holder`, or throws SNAPCOW_BUSY naming what already holds it.
 * Synchronous, so two opens racing on one device cannot both succeed.
 * @internal
 * @example
 * claimDevice(device, origin, 'origin', 'openOrigin')
 */
export function claimDevice(device: BlockDevice, holder: object, role: Claim['role'], what: string): void {
  const claim = claims.get(device)
  if (claim !== undefined) {
    const owner = claim.holder === holder ? 'this origin' : 'another open origin'
    const as = claim.role === 'origin' ? `the origin device of ${owner}` : `the COW device of a snapshot of ${owner}`
    throw new SnapcowError('SNAPCOW_BUSY',
      `${what}: the device is already in use as ${as}; a device serves one origin or one snapshot at a time ` +
      `(close that origin, or drop that snapshot, first)`)
  }
  claims.set(device, { holder, role })
  const mine = held.get(holder) ?? new Set<BlockDevice>()
  held.set(holder, mine.add(device))
}

/**
 * Releases `device` if `holder` holds it (a no-op otherwise).
 * @internal
 * @example
 * releaseDevice(cow, origin)
 */
export function releaseDevice(device: BlockDevice, holder: object): void {
  if (claims.get(device)?.holder !== holder) return
  claims.delete(device)
  held.get(holder)?.delete(device)
}

/**
 * Releases every device `holder` holds (its origin device and its snapshots' COWs).
 * @internal
 * @example
 * releaseAll(origin)
 */
export function releaseAll(holder: object): void {
  for (const device of held.get(holder) ?? []) claims.delete(device)
  held.delete(holder)
}

/**
 * Hands every device `from` holds to `to` (openOrigin claims before the Origin exists).
 * @internal
 * @example
 * transferClaims(token, origin)
 */
export function transferClaims(from: object, to: object): void {
  for (const device of held.get(from) ?? []) claims.set(device, { holder: to, role: claims.get(device)!.role })
  const devices = held.get(from)
  held.delete(from)
  if (devices !== undefined) held.set(to, devices)
}
