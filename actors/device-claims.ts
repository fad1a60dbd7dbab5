// actors/device-claims.ts: which device objects an open origin holds in this process, as the
// kernel claims a block device exclusively for a snapshot-origin or snapshot target: the origin
// device, and the COW of each snapshot that is being made or is live. A second claim on a
// device is refused with SNAPCOW_BUSY; an origin's claims go when it is closed.
import type { BlockDevice } from '../io/block-device.js'
import { SnapcowError } from '../io/errors.js'

/** What a device is used as, by which holder. Plain data: no reference back to the holder,
 * so a holder dropped without close() is collected with its devices (no WeakMap cycle). */
interface Claim {
  holderId: number
  role: 'origin' | 'cow'
}

const claims = new WeakMap<BlockDevice, Claim>()
/** Each holder's id and devices, so closing it releases them all. */
const held = new WeakMap<object, { id: number; devices: Set<BlockDevice> }>()
let nextId = 1
const holding = (holder: object) => {
  let entry = held.get(holder)
  if (entry === undefined) held.set(holder, entry = { id: nextId++, devices: new Set() })
  return entry
}

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
    const owner = claim.holderId === held.get(holder)?.id ? 'this origin' : 'another open origin'
    const as = claim.role === 'origin' ? `the origin device of ${owner}` : `the COW device of a snapshot of ${owner}`
    throw new SnapcowError('SNAPCOW_BUSY',
      `${what}: the device is already in use as ${as}; a device serves one origin or one snapshot at a time ` +
      `(close that origin, or drop that snapshot, first)`)
  }
  const mine = holding(holder)
  claims.set(device, { holderId: mine.id, role })
  mine.devices.add(device)
}

/**
 * Releases `device` if `holder` holds it (a no-op otherwise).
 * @internal
 * @example
 * releaseDevice(cow, origin)
 */
export function releaseDevice(device: BlockDevice, holder: object): void {
  const mine = held.get(holder)
  if (mine === undefined || claims.get(device)?.holderId !== mine.id) return
  claims.delete(device)
  mine.devices.delete(device)
}

/**
 * Releases every device `holder` holds (its origin device and its snapshots' COWs).
 * @internal
 * @example
 * releaseAll(origin)
 */
export function releaseAll(holder: object): void {
  for (const device of held.get(holder)?.devices ?? []) claims.delete(device)
  held.delete(holder)
}

/**
 * Hands every device `from` holds to `to` (openOrigin claims before the Origin exists).
 * @internal
 * @example
 * transferClaims(token, origin)
 */
export function transferClaims(from: object, to: object): void {
  const entry = held.get(from)
  held.delete(from)
  if (entry !== undefined) held.set(to, entry) // same id: the claims stay as they are
}
