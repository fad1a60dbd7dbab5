// test/journals/record.ts: records the journals that test/journal/recorded.test.ts replays
// (architecture: "replay tests from recorded journals checked into test/"). Run it again only
// when the engine's journal is meant to change:
//
//   npx tsx test/journals/record.ts            # all scenarios
//   npx tsx test/journals/record.ts merge      # one
//
// Each scenario writes `<name>.jsonl` (payloads on, so the replay is byte-exact) and
// `<name>.expect.json`: how to rebuild the initial images (the origin is `pattern(0, size,
// seed)` from test/support/bytes.ts, every COW starts zeroed at the `cowSize` its `snapshot`
// entry gives), and the sha256 of every final image and every snapshot's final status.
// Everything is deterministic: data from fixed seeds, devices completing after a seeded number
// of event-loop turns (scrambled, but the same every run).
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { MemoryDevice } from '../../io/memory-device.js'
import type { Origin } from '../../actors/origin-volume.js'
import { openOrigin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import type { SnapshotStatus } from '../../actors/status.js'
import { pattern } from '../support/bytes.js'
import { delayedDevice, seededDelays, seededRandom } from '../support/delayed-device.js'

const SECTOR = 512

/** What recorded.test.ts checks a replay against. */
export interface Expectation {
  description: string
  origin: { size: number; patternSeed: number }
  sha256: { origin: string; cows: string[] }
  statuses: Array<Pick<SnapshotStatus, 'state' | 'line'>>
  entries: number
}

interface Context {
  origin: Origin
  /** A new COW device of `size` bytes (zeroed, completing in the scenario's scrambled order). */
  cow(size: number): ReturnType<typeof delayedDevice>
  random: () => number
  /** Every snapshot made, in order (their final statuses are recorded). */
  made: Snapshot[]
}

interface Scenario {
  description: string
  originSize: number
  patternSeed: number
  deviceSeed: number
  /** Requests that take 30 extra turns (on top of the seeded scramble). */
  slow?: (op: 'read' | 'write' | 'flush', offset: number, length: number) => boolean
  run(c: Context): Promise<void>
}

const settled = (all: Array<Promise<unknown>>) => Promise.allSettled(all)
const int = (random: () => number, min: number, max: number) => min + Math.floor(random() * (max - min + 1))

/** Concurrent reads and writes over `volumes`, writes to one volume never overlapping (their
 * order would be the caller's race, which no journal can pin down). */
function randomBatch(random: () => number, volumes: Array<Origin | Snapshot>, sectors: number, count: number): Array<Promise<unknown>> {
  const written = new Map<object, Set<number>>()
  const out: Array<Promise<unknown>> = []
  for (let i = 0; i < count; i++) {
    const volume = volumes[int(random, 0, volumes.length - 1)]!
    const sector = int(random, 0, sectors - 1)
    const length = Math.min(int(random, 1, 6), sectors - sector)
    if (random() < 0.5) {
      out.push(volume.read(sector * SECTOR, new Uint8Array(length * SECTOR)))
      continue
    }
    const taken = written.get(volume) ?? new Set<number>()
    written.set(volume, taken)
    let free = true
    for (let s = sector; s < sector + length; s++) if (taken.has(s)) free = false
    if (!free) continue
    for (let s = sector; s < sector + length; s++) taken.add(s)
    out.push(volume.write(sector * SECTOR, pattern(sector * SECTOR, length * SECTOR, int(random, 1, 1000))))
  }
  return out
}

export const scenarios: Record<string, Scenario> = {
  racing: {
    description: 'racing origin and snapshot reads and writes over three snapshots (4 KiB persistent, 1 KiB transient, 16 KiB persistent made mid-run), snapshot reads held at the origin while their chunk is copied',
    originSize: 64 * 1024,
    patternSeed: 11,
    deviceSeed: 1101,
    slow: (op, _offset, length) => op === 'read' && length === 3 * SECTOR,
    async run({ origin, cow, random, made }) {
      const sectors = origin.size / SECTOR
      made.push(await origin.createSnapshot(cow(192 * 1024), { chunkSize: 4096 }))
      made.push(await origin.createSnapshot(cow(96 * 1024), { chunkSize: 1024, persistent: false }))
      for (let batch = 0; batch < 3; batch++) {
        const running = randomBatch(random, [origin, origin, ...made], sectors, 7)
        // The third snapshot is made while the second batch's first half is in flight.
        if (batch === 1) running.push(origin.createSnapshot(cow(256 * 1024), { chunkSize: 16384 }).then((s) => { made.push(s) }))
        running.push(...randomBatch(random, [origin, origin, ...made.slice(0, 2)], sectors, 7))
        if (batch === 2) running.push(made[2]!.write(40 * 1024, pattern(40 * 1024, 1024, 5)), made[2]!.read(0, new Uint8Array(8192)))
        // A slow snapshot read (3 sectors) of a chunk not copied yet, then an origin write to
        // it: the exception commits while the read is out (CompletedWithReaders, read-drained).
        const chunk = [3, 9, 14][batch]!
        running.push(made[0]!.read(chunk * 4096, new Uint8Array(3 * SECTOR)), origin.write(chunk * 4096 + 512, pattern(chunk * 4096 + 512, 512, batch + 1)))
        await settled(running)
      }
    },
  },
  invalidation: {
    description: 'a persistent 4 KiB-chunk snapshot whose COW has room for one exception: the second origin write to a new chunk invalidates it (spec §13); a 1 KiB transient snapshot beside it stays valid',
    originSize: 32 * 1024,
    patternSeed: 22,
    deviceSeed: 2202,
    async run({ origin, cow, random, made }) {
      const small = await origin.createSnapshot(cow(3 * 4096), { chunkSize: 4096 }) // header, one metadata chunk, one data chunk
      const other = await origin.createSnapshot(cow(64 * 1024), { chunkSize: 1024, persistent: false })
      made.push(small, other)
      await settled([
        small.read(4096, new Uint8Array(4096)),
        origin.write(4096, pattern(4096, 1024, 1)),
        other.read(0, new Uint8Array(8192)),
        origin.write(3 * 4096, pattern(3 * 4096, 512, 2)),
        small.write(6 * 4096, pattern(6 * 4096, 512, 3)),
        origin.write(5 * 4096 + 1024, pattern(5 * 4096 + 1024, 2048, 4)),
      ])
      await settled([
        small.read(4096, new Uint8Array(512)), // refused: invalid
        ...randomBatch(random, [origin, other], origin.size / SECTOR, 10),
      ])
    },
  },
  merge: {
    description: 'a persistent 2 KiB-chunk snapshot merged into its origin while origin reads and writes and a second (8 KiB, persistent) snapshot go on (spec §12)',
    originSize: 64 * 1024,
    patternSeed: 33,
    deviceSeed: 3303,
    async run({ origin, cow, random, made }) {
      const sectors = origin.size / SECTOR
      const merging = await origin.createSnapshot(cow(192 * 1024), { chunkSize: 2048 })
      made.push(merging)
      await settled(randomBatch(random, [origin, merging], sectors, 16))
      const other = await origin.createSnapshot(cow(192 * 1024), { chunkSize: 8192 })
      made.push(other)
      await settled(randomBatch(random, [origin, merging, other], sectors, 12))
      // The merge starts with I/O in flight, and more I/O comes while it runs.
      await settled([
        ...randomBatch(random, [origin, other], sectors, 4),
        merging.merge(),
        ...randomBatch(random, [origin, other], sectors, 12),
      ])
      await settled(randomBatch(random, [origin, other], sectors, 6))
    },
  },
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** Records one scenario into `dir`; returns what it wrote. */
export async function record(name: string, dir: URL): Promise<Expectation> {
  const scenario = scenarios[name]
  if (scenario === undefined) throw new Error(`no scenario ${name}; there are ${Object.keys(scenarios).join(', ')}`)
  const delays = seededDelays(scenario.deviceSeed, 4)
  const slow = seededRandom(~scenario.deviceSeed)
  const delay = (op: 'read' | 'write' | 'flush', offset: number, length: number) =>
    delays() + (op === 'read' && slow() < 0.25 ? 25 : 0) + (scenario.slow?.(op, offset, length) === true ? 80 : 0)
  const originImage = MemoryDevice.from(pattern(0, scenario.originSize, scenario.patternSeed))
  const path = fileURLToPath(new URL(`${name}.jsonl`, dir))
  const origin = await openOrigin(delayedDevice(originImage, delay), { journal: { path, payloads: true, ifExists: 'overwrite' } })
  const cows: MemoryDevice[] = []
  const made: Snapshot[] = []
  await scenario.run({
    origin,
    cow: (size) => { const image = new MemoryDevice(size); cows.push(image); return delayedDevice(image, delay) },
    random: seededRandom(scenario.patternSeed * 7919),
    made,
  })
  const statuses = made.map((s) => { const { state, line } = s.status(); return { state, line } })
  await origin.close()
  const expectation: Expectation = {
    description: scenario.description,
    origin: { size: scenario.originSize, patternSeed: scenario.patternSeed },
    sha256: { origin: sha256(originImage.snapshotBytes()), cows: cows.map((c) => sha256(c.snapshotBytes())) },
    statuses,
    entries: origin.journal.entries().length,
  }
  writeFileSync(new URL(`${name}.expect.json`, dir), `${JSON.stringify(expectation, null, 2)}\n`)
  return expectation
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const names = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(scenarios)
  for (const name of names) {
    const written = await record(name, new URL('.', import.meta.url))
    console.log(`${name}: ${written.entries} entries, statuses ${written.statuses.map((s) => s.line).join(' | ')}`)
  }
}
