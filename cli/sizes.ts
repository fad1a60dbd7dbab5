// cli/sizes.ts: sizes on the command line ("4k", "64M", "512") and sizes printed for people.
import { usage } from './fail.js'

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, s: 512 }

/** Bytes from "4096", "4k", "4KiB", "64M", "2g", "8s" (sectors); a usage error otherwise. */
export function parseSize(text: string, what: string): number {
  const match = /^(\d+)\s*([kmgtsb]?)(?:i?b)?$/i.exec(text.trim())
  const unit = match === null ? undefined : UNITS[(match[2] ?? '').toLowerCase()]
  if (match === null || unit === undefined) throw usage(undefined, `${what} "${text}" is not a size (examples: 4096, 4k, 64M, 8s for sectors)`)
  const bytes = Number(match[1]) * unit
  if (!Number.isSafeInteger(bytes)) throw usage(undefined, `${what} "${text}" is too large`)
  return bytes
}

/** "16 KiB", "64 MiB", "1.5 GiB", or plain bytes below 1 KiB. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return unit === 0 ? `${bytes} bytes` : `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`
}
