// test/soak/sizes.ts: how big the soak runs are. `npm test` runs them at CI size (a few seconds
// each); `npm run test:soak` (vitest.soak.config.ts) sets the nightly size through these variables.
function knob(name: string, ciDefault: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return ciDefault
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${name}=${raw} is not a positive number`)
  return n
}

export const SOAK = {
  /** How long the 32-client load runs, in seconds (≤ 60 nightly, ≤ 10 in CI). */
  seconds: knob('SNAPCOW_SOAK_SECONDS', 3),
  /** Connect/disconnect cycles (polite, reset mid-request, reset mid-reply, mixed). */
  cycles: knob('SNAPCOW_SOAK_CYCLES', 300),
  /** Rounds of "writers reset with writes in flight, then every acknowledged write is checked". */
  resets: knob('SNAPCOW_SOAK_RESETS', 4),
  /** fio / qemu-io processes killed with SIGKILL mid-run. */
  kills: knob('SNAPCOW_SOAK_KILLS', 2),
}

/** Prints one figure line for people reading the run (the report quotes them). */
export function figure(what: string, values: Record<string, string | number>): void {
  console.log(`soak ${what}: ${Object.entries(values).map(([k, v]) => `${k}=${v}`).join(' ')}`)
}
