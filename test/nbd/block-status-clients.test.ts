// Real clients reading a snapshot export's block status: `nbdinfo --map` (base:allocation),
// `nbdinfo --map=qemu:allocation-depth` and `qemu-img map --output=json` (plain, and with
// qemu's x-dirty-bitmap=qemu:allocation-depth view), checked against the chunks the test
// copied and Snapshot.extents(). Skips, saying which binary is missing, without the clients.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { openOrigin, type Origin } from '../../actors/origin-volume.js'
import type { Snapshot } from '../../actors/snapshot-volume.js'
import { pattern, startServer } from './raw-client.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { installed } from '../support/tools.js'

const CHUNK = 4096
const SIZE = 4 << 20

/** A test that runs only when `bin` is installed; its name says when it is not. */
function clientTest(bin: string, name: string, body: () => Promise<void>): void {
  if (installed(bin)) test(name, body, 30_000)
  else test.skip(`${name} (skipped: ${bin} not installed; apt-get install libnbd-bin qemu-utils)`, body)
}

const exec = promisify(execFile)
async function run(bin: string, args: string[]): Promise<string> {
  const { stdout } = await exec(bin, args, { encoding: 'utf8', timeout: 20_000 })
  return stdout
}

/** What the test writes: through the origin (the old chunk is copied to the COW) or to the snapshot. */
const WRITES: Array<{ via: 'origin' | 'snapshot'; offset: number; length: number }> = [
  { via: 'origin', offset: 0, length: 2 * CHUNK },
  { via: 'snapshot', offset: (1 << 20) + 512, length: 512 },
  { via: 'origin', offset: (2 << 20) + 3 * CHUNK + 1024, length: 3 * CHUNK },
  { via: 'snapshot', offset: SIZE - CHUNK, length: CHUNK },
]

/** The runs a client must see, from WRITES alone: every chunk a write touched is in the COW. */
function expectedRuns(): Array<{ offset: number; length: number; inCow: boolean }> {
  const copied = new Set<number>()
  for (const w of WRITES) for (let c = Math.floor(w.offset / CHUNK); c * CHUNK < w.offset + w.length; c++) copied.add(c)
  const runs: Array<{ offset: number; length: number; inCow: boolean }> = []
  for (let c = 0; c < SIZE / CHUNK; c++) {
    const prev = runs.at(-1)
    if (prev !== undefined && prev.inCow === copied.has(c)) prev.length += CHUNK
    else runs.push({ offset: c * CHUNK, length: CHUNK, inCow: copied.has(c) })
  }
  return runs
}

/** nbdinfo --map's lines: offset, length, type (the context's flags), description. */
function parseMap(out: string): Array<{ offset: number; length: number; type: number; description: string }> {
  return out.trim().split('\n').map((line) => {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(.*)$/.exec(line)
    if (m === null) throw new Error(`nbdinfo --map printed an unexpected line: ${line}`)
    return { offset: Number(m[1]), length: Number(m[2]), type: Number(m[3]), description: m[4]!.trim() }
  })
}

let origin: Origin
let snap: Snapshot
let served: Awaited<ReturnType<typeof startServer>>
const uri = (name: string) => `nbd+unix:///${name}?socket=${served.socket}`
beforeEach(async () => {
  origin = await openOrigin(MemoryDevice.from(pattern(SIZE, 1)))
  snap = await origin.createSnapshot(new MemoryDevice(SIZE + (1 << 20)), { chunkSize: CHUNK })
  for (const w of WRITES) await (w.via === 'origin' ? origin : snap).write(w.offset, new Uint8Array(w.length).fill(7))
  served = await startServer({ origin, snap: { device: snap, readOnly: true } })
})
afterEach(() => served.stop())

test('the writes above left COW and origin runs in the snapshot (the premise of the client tests)', () => {
  expect(snap.extents()).toEqual(expectedRuns())
  expect(expectedRuns().filter((r) => r.inCow)).toHaveLength(4)
})

clientTest('nbdinfo', 'nbdinfo lists both contexts and --map=qemu:allocation-depth shows the COW (1) and origin (2) runs', async () => {
  expect(await run('nbdinfo', [uri('snap')])).toMatch(/contexts:\s+base:allocation\s+qemu:allocation-depth/)
  const map = parseMap(await run('nbdinfo', ['--map=qemu:allocation-depth', uri('snap')]))
  expect(map.map(({ offset, length, type }) => ({ offset, length, inCow: type === 1 }))).toEqual(expectedRuns())
  expect(map.map(({ offset, length, type }) => ({ offset, length, inCow: type === 1 }))).toEqual(snap.extents())
  expect(new Set(map.map((e) => `${e.type} ${e.description}`))).toEqual(new Set(['1 local', '2 backing depth 2']))
  // The origin export is one layer: depth 1 throughout.
  expect(parseMap(await run('nbdinfo', ['--map=qemu:allocation-depth', uri('origin')]))).toEqual([{ offset: 0, length: SIZE, type: 1, description: 'local' }])
})

clientTest('nbdinfo', 'nbdinfo --map (base:allocation): all of the snapshot is data, none of it claimed zero', async () => {
  expect(parseMap(await run('nbdinfo', ['--map', uri('snap')]))).toEqual([{ offset: 0, length: SIZE, type: 0, description: 'data' }])
})

clientTest('qemu-img', 'qemu-img map --output=json: all data; with x-dirty-bitmap=qemu:allocation-depth, the COW runs', async () => {
  const plain = JSON.parse(await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri('snap')])) as Array<Record<string, unknown>>
  expect(plain).toEqual([{ start: 0, length: SIZE, depth: 0, present: true, zero: false, data: true, offset: 0 }])
  // qemu's client reads one context; x-dirty-bitmap makes it read this one, folding depth 1
  // (local) to data:false and depth 2 (backing) to zero:true (qemu commit "nbd: Add
  // 'qemu:allocation-depth' metacontext"). Here zero:true means "read from the origin".
  const opts = `driver=nbd,export=snap,server.type=unix,server.path=${served.socket},x-dirty-bitmap=qemu:allocation-depth`
  const depth = JSON.parse(await run('qemu-img', ['map', '--output=json', '--image-opts', opts])) as Array<{ start: number; length: number; data: boolean; zero: boolean }>
  expect(depth.map((e) => ({ offset: e.start, length: e.length, inCow: !e.data && !e.zero }))).toEqual(expectedRuns())
  // Every run is one of the two folded states, never qemu's "unallocated" (data, not zero).
  expect(depth.every((e) => e.data === e.zero)).toBe(true)
})
