// The machine is the spec: paths through machines/chunk.ts that together cover every edge
// (xstate/graph) are driven through the real engine, and after each step the engine's
// chunkState() equals the machine's state.
import { getShortestPaths, getSimplePaths } from 'xstate/graph'
import { createActor } from 'xstate'
import { describe, expect, test } from 'vitest'
import { MemoryDevice } from '../../io/memory-device.js'
import { asNewChunk } from '../../io/units.js'
import type { ChunkEvent } from '../../machines/chunk.js'
import { chunkMachine, chunkStateName } from '../../machines/chunk.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'

const CHUNK = 4096
const C = 6 // the chunk every path is about
const bio = { id: 0 }
const alphabet: ChunkEvent[] = [
  { type: 'origin-write', bio, newChunk: asNewChunk(2) },
  { type: 'origin-write', bio }, // no room
  { type: 'snapshot-write', bio, newChunk: asNewChunk(2), wholeChunk: true, overflowAllowed: false },
  { type: 'snapshot-write', bio, newChunk: asNewChunk(2), wholeChunk: false, overflowAllowed: false },
  { type: 'snapshot-write', bio, wholeChunk: false, overflowAllowed: true }, // no room, PO
  { type: 'snapshot-write', bio, wholeChunk: false, overflowAllowed: false }, // no room, P
  { type: 'copy-done', ok: true },
  { type: 'copy-done', ok: false },
  { type: 'commit-done', ok: true, readers: 0 },
  { type: 'commit-done', ok: true, readers: 1 },
  { type: 'commit-done', ok: false, readers: 0 },
  { type: 'read-drained' },
]
const input = { snapshotId: 'model', oldChunk: C as never }
const key = (e: ChunkEvent) => JSON.stringify({ ...e, bio: undefined })
const stateKey = (s: { value: unknown; context: { copyOk: boolean } }) => JSON.stringify(s.value) + (s.context.copyOk ? '+copied' : '')
const options = {
  input,
  events: alphabet,
  serializeState: (s: { value: unknown; context: { copyOk: boolean } }) => stateKey(s),
  serializeEvent: (e: ChunkEvent) => key(e),
}

// After these the snapshot is Invalid or Overflowed: nothing more can happen to the chunk.
const ends = (e: ChunkEvent) => ('newChunk' in e && e.newChunk === undefined && e.type !== 'origin-write' ? true : false)
  || (e.type === 'origin-write' && e.newChunk === undefined) || (e.type === 'commit-done' && !e.ok)
  || (e.type === 'copy-done' && !e.ok)

/** Runs events on a fresh machine; returns the edge each one took, named by what changed. */
function edgesOf(events: ChunkEvent[]): string[] {
  const actor = createActor(chunkMachine, { input }).start()
  const emitted: string[] = []
  actor.on('*', (command) => { emitted.push(command.type) })
  const edges: string[] = []
  const step = (e: ChunkEvent) => {
    const from = stateKey(actor.getSnapshot() as never)
    emitted.length = 0
    actor.send(e)
    edges.push(`${from} --${e.type}[${emitted.join(',')}]--> ${stateKey(actor.getSnapshot() as never)}`)
  }
  for (const e of events) {
    step(e)
    // A failed copy needs no more I/O: the store answers the commit at once (spec §9.5 step 1).
    if (e.type === 'copy-done' && !e.ok) step({ type: 'commit-done', ok: false, readers: 0 })
  }
  return edges
}

/**
 * Every edge the engine can take: breadth first from None over the alphabet, not going on
 * after an event that leaves the snapshot Invalid or Overflowed.
 */
function allEdges(): Set<string> {
  const edges = new Set<string>()
  const seen = new Set<string>()
  const queue: ChunkEvent[][] = [[]]
  while (queue.length > 0) {
    const prefix = queue.shift()!
    const at = createActor(chunkMachine, { input }).start()
    for (const e of prefix) at.send(e)
    for (const e of alphabet) {
      if (!at.getSnapshot().can(e)) continue
      const taken = edgesOf([...prefix, e]).slice(prefix.length)
      taken.forEach((edge) => edges.add(edge))
      const to = taken.at(-1)!.split('--> ')[1]!
      if (!ends(e) && !seen.has(to)) {
        seen.add(to)
        queue.push([...prefix, e])
      }
    }
  }
  return edges
}

function paths(): ChunkEvent[][] {
  const found = getSimplePaths(chunkMachine, options as never)
  const out = new Map<string, ChunkEvent[]>()
  for (const path of found) {
    const events: ChunkEvent[] = []
    for (const step of path.steps) {
      if ((step.event.type as string) === 'xstate.init') continue
      events.push(step.event as ChunkEvent)
      if (ends(step.event as ChunkEvent)) break
    }
    if (events.length > 0) out.set(events.map(key).join(' '), events)
  }
  return [...out.values()]
}

/** Drives one path through a real origin and snapshot; checks chunkState at every step. */
async function drive(events: ChunkEvent[]): Promise<void> {
  const full = events[0]!.type !== 'copy-done' && !('newChunk' in events[0]! && events[0]!.newChunk !== undefined)
  const overflow = events.some((e) => e.type === 'snapshot-write' && e.overflowAllowed)
  const originDevice = new ControlledDevice(MemoryDevice.from(new Uint8Array(32 * CHUNK).fill(1)), 'origin')
  const cowDevice = new ControlledDevice(new MemoryDevice((full ? 3 : 16) * CHUNK), 'cow')
  originDevice.passThrough = () => true
  cowDevice.passThrough = () => true
  const origin = await openOrigin(originDevice)
  const snapshot = await origin.createSnapshot(cowDevice, { chunkSize: CHUNK, overflow })
  if (full) await origin.write(20 * CHUNK, new Uint8Array(CHUNK)) // takes the only data chunk
  // From here: copies and full-chunk writes to COW data chunks, metadata area writes and
  // 512-byte snapshot reads of the origin wait for the driver; the rest goes through.
  cowDevice.passThrough = (op, offset) => !(op === 'write' && offset >= CHUNK)
  originDevice.passThrough = (op) => op !== 'read'
  const copyRead = () => originDevice.parked.filter((p) => p.length === CHUNK)
  const snapshotReads = () => originDevice.parked.filter((p) => p.length === 512)
  const machine = createActor(chunkMachine, { input }).start()
  const background: Array<Promise<unknown>> = []
  const track = (p: Promise<unknown>) => background.push(p.catch(() => undefined))
  for (const [i, e] of events.entries()) {
    switch (e.type) {
      case 'origin-write':
        track(origin.write(C * CHUNK + 1024, new Uint8Array(1024).fill(2)))
        break
      case 'snapshot-write':
        track(e.wholeChunk ? snapshot.write(C * CHUNK, new Uint8Array(CHUNK).fill(3)) : snapshot.write(C * CHUNK, new Uint8Array(512).fill(4)))
        break
      case 'copy-done':
        for (const p of copyRead()) p.release()
        await settle()
        e.ok ? cowDevice.releaseOne('write', 2 * CHUNK) : cowDevice.find('write', 2 * CHUNK)[0]!.fail()
        break
      case 'commit-done':
        if (e.readers > 0 && snapshotReads().length === 0) track(snapshot.read(C * CHUNK + 512, new Uint8Array(512)))
        if (e.readers === 0) for (const p of snapshotReads()) p.release()
        await settle()
        for (const area of cowDevice.find('write', CHUNK)) e.ok ? area.release() : area.fail()
        break
      case 'read-drained':
        for (const p of snapshotReads()) p.release()
        break
    }
    await settle()
    machine.send(e)
    // A failed copy needs no more I/O: the store answers the commit at once (spec §9.5 step 1).
    if (e.type === 'copy-done' && !e.ok) machine.send({ type: 'commit-done', ok: false, readers: 0 })
    const expected = chunkStateName(machine.getSnapshot().value)
    expect(snapshot.chunkState(C), `after step ${i} (${key(e)})`).toBe(expected)
  }
  originDevice.passThrough = () => true
  cowDevice.passThrough = () => true
  originDevice.releaseAll()
  cowDevice.releaseAll()
  await settle()
  originDevice.releaseAll()
  cowDevice.releaseAll()
  await Promise.all(background)
  expect(origin.engine.snapshots[0]?.live.size ?? 0).toBe(0)
}

/**
 * Simple paths (xstate/graph) never take a self-loop (a held write, a write that finds no
 * room), so each edge they miss gets a path of its own: xstate/graph's shortest path to the
 * edge's source state, then the edge's event.
 */
function edgeCoveringPaths(): ChunkEvent[][] {
  const result = paths()
  const covered = new Set(result.flatMap(edgesOf))
  for (const path of getShortestPaths(chunkMachine, options as never)) {
    const prefix = path.steps.map((step) => step.event as ChunkEvent).filter((e) => (e.type as string) !== 'xstate.init')
    if (prefix.some(ends)) continue
    const at = createActor(chunkMachine, { input }).start()
    for (const e of prefix) at.send(e)
    for (const e of alphabet) {
      if (!at.getSnapshot().can(e)) continue
      const edge = edgesOf([...prefix, e]).at(-1)!
      if (covered.has(edge)) continue
      covered.add(edge)
      result.push([...prefix, e])
    }
  }
  return result
}

const generated = edgeCoveringPaths()

test('the generated paths cover every edge of the chunk machine', () => {
  const covered = new Set(generated.flatMap(edgesOf))
  const missing = [...allEdges()].filter((edge) => !covered.has(edge))
  expect(missing).toEqual([])
  expect(allEdges().size).toBeGreaterThan(10)
})

describe('each path, driven through the engine', () => {
  test.each(generated.map((events) => [events.map((e) => e.type + ('ok' in e ? `(${String(e.ok)})` : '')).join(' → '), events] as const))('%s', async (_name, events) => {
    await drive(events)
  })
})
