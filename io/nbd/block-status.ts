// io/nbd/block-status.ts: what NBD_CMD_BLOCK_STATUS reports for one context over a range.
// A device with `extents()` (a snapshot: runs in its COW or read through to the origin) gets
// allocation depths 1 and 2; every other device is one layer, depth 1 throughout.

import type { BlockDevice } from '../block-device.js'
import type { MetaContext } from './meta-context.js'

/** One descriptor of an NBD_REPLY_TYPE_BLOCK_STATUS chunk. */
export interface StatusExtent {
  readonly length: number
  readonly flags: number
}

/** A device that can say which of its bytes live in its own store (Snapshot.extents(), api.md). */
interface ExtentsSource {
  extents(offset: number, length: number): Array<{ offset: number; length: number; inCow: boolean }>
}

function hasExtents(device: BlockDevice): device is BlockDevice & ExtentsSource {
  return typeof (device as Partial<ExtentsSource>).extents === 'function'
}

/** qemu:allocation-depth values (qemu docs/interop/nbd: 1 the active layer, 2 the first backing layer). */
export const DEPTH_OWN = 1
export const DEPTH_BACKING = 2

/** The spec's advice: at most 2^20 descriptors in one chunk (the rest is asked for again). */
export const MAX_STATUS_EXTENTS = 1 << 20

/**
 * The descriptors for `context` over `[offset, offset + length)`: ordered, adjacent ones with
 * different flags, lengths summing to at most `length`, at least one. `reqOne` keeps only the
 * first. base:allocation is flags 0 (allocated, contents unknown) everywhere: snapshot bytes
 * in the COW and bytes read through to the origin are both real data, and nothing is known zero.
 */
export function statusExtents(device: BlockDevice, context: MetaContext, offset: number, length: number, reqOne: boolean): StatusExtent[] {
  if (context.name === 'base:allocation' || !hasExtents(device)) {
    const flags = context.name === 'base:allocation' ? 0 : DEPTH_OWN
    return [{ length, flags }]
  }
  const runs = device.extents(offset, length)
  const out: StatusExtent[] = []
  for (const run of runs) {
    const flags = run.inCow ? DEPTH_OWN : DEPTH_BACKING
    const prev = out[out.length - 1]
    if (prev !== undefined && prev.flags === flags) out[out.length - 1] = { length: prev.length + run.length, flags }
    else {
      if (out.length === (reqOne ? 1 : MAX_STATUS_EXTENTS)) break
      out.push({ length: run.length, flags })
    }
  }
  if (out.length === 0) throw new Error(`the device reported no extents for ${length} bytes at ${offset}`)
  return out
}
