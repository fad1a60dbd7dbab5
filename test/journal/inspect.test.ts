// Architecture rule 5: chunk actors are created with the caller's `inspect` observer, under the
// machine's stable id ('chunk') and an actor id naming the snapshot and chunk, so an inspector
// sees a chunk go None → Pending → CompletedWithReaders → Completed (spec §3 states A–D).
// `inspectChunks` limits inspection to the actors it picks.
import { expect, test } from 'vitest'
import type { AnyActor, InspectionEvent } from 'xstate'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'
import { chunkMachine, chunkStateName } from '../../machines/chunk.js'
import { ControlledDevice, settle } from '../support/controlled-device.js'

const CHUNK = 4096
const at = (chunk: number) => chunk * CHUNK

const actorOf = (event: InspectionEvent) => event.actorRef as AnyActor
const idOf = (event: InspectionEvent) => actorOf(event).id
/** A machine snapshot's value (InspectionEvent types snapshots of any logic). */
const valueOf = (snapshot: unknown) => (snapshot as { value: unknown }).value
/** Top-level state names of the `@xstate.snapshot` events, consecutive repeats merged. */
const statesSeen = (events: readonly InspectionEvent[]) => events
  .flatMap((e) => (e.type === '@xstate.snapshot' ? [chunkStateName(valueOf(e.snapshot))] : []))
  .filter((state, i, all) => i === 0 || all[i - 1] !== state)

test('a chunk seen through all four states, by a plain observer function', async () => {
  const events: InspectionEvent[] = []
  const origin = new ControlledDevice(MemoryDevice.from(new Uint8Array(16 * CHUNK).fill(9)), 'origin')
  origin.passThrough = (op) => op !== 'read' // park reads only: the snapshot read and the copy's read
  const volume = await openOrigin(origin, { inspect: (event) => { events.push(event) } })
  const snap = await volume.createSnapshot(new MemoryDevice(64 * CHUNK), { chunkSize: CHUNK })
  expect(events).toEqual([]) // no actor until a chunk leaves None (rule 3)

  const read = snap.read(at(5), new Uint8Array(CHUNK)) // A: held at the origin
  await settle()
  expect(origin.find('read', at(5))).toHaveLength(1)
  const write = volume.write(at(5), new Uint8Array(512).fill(1)) // B: the copy starts, the write waits
  await settle()
  expect(snap.chunkState(5)).toBe('Pending')
  const [, copyRead] = origin.find('read', at(5))
  copyRead!.release() // the copy and its commit finish while the read is still out: C
  await settle()
  expect(snap.chunkState(5)).toBe('CompletedWithReaders')
  origin.releaseOne('read', at(5)) // the read drains: D
  await Promise.all([read, write])
  expect(snap.chunkState(5)).toBe('Completed')

  // What arrives: XState's actor, event and snapshot inspection events (and microsteps, actions).
  const types = new Set(events.map((e) => e.type))
  for (const type of ['@xstate.actor', '@xstate.event', '@xstate.snapshot'] as const) expect(types).toContain(type)
  // Each names the chunk actor and the chunk machine.
  for (const event of events) {
    expect(idOf(event)).toBe('snap-1:5')
    expect(actorOf(event).logic).toBe(chunkMachine)
    expect((actorOf(event).logic as typeof chunkMachine).id).toBe('chunk')
  }
  expect(events[0]!.type).toBe('@xstate.actor')

  const snapshots = events.filter((e) => e.type === '@xstate.snapshot')
  expect(snapshots.map((e) => valueOf(e.snapshot))).toEqual([
    'None', { Pending: 'copying' }, { Pending: 'committing' }, 'CompletedWithReaders', 'Completed', 'Completed',
  ])
  expect(statesSeen(events)).toEqual(['None', 'Pending', 'CompletedWithReaders', 'Completed'])
  // The events it took, in order; the last snapshot is the actor stopped (the chunk is a table entry now).
  expect(events.flatMap((e) => (e.type === '@xstate.event' ? [e.event.type] : [])))
    .toEqual(['xstate.init', 'origin-write', 'copy-done', 'commit-done', 'read-drained'])
  expect(snapshots.at(-1)!.snapshot.status).toBe('stopped')
  expect(snapshots.at(-1)!.event.type).toBe('xstate.stop')
})

test('an Observer object works the same as a function', async () => {
  const seen: string[] = []
  const volume = await openOrigin(MemoryDevice.from(new Uint8Array(16 * CHUNK)), {
    inspect: { next: (event) => { if (event.type === '@xstate.snapshot') seen.push(chunkStateName(valueOf(event.snapshot))) } },
  })
  await volume.createSnapshot(new MemoryDevice(64 * CHUNK), { chunkSize: CHUNK })
  await volume.write(at(2), new Uint8Array(512))
  expect(seen.filter((s, i) => i === 0 || seen[i - 1] !== s)).toEqual(['None', 'Pending', 'Completed'])
})

test('inspectChunks: only the picked chunk\'s actors are inspected; the others still get their exceptions', async () => {
  const events: InspectionEvent[] = []
  const asked: string[] = []
  const volume = await openOrigin(MemoryDevice.from(new Uint8Array(16 * CHUNK).fill(3)), {
    inspect: (event) => { events.push(event) },
    inspectChunks: (snapshotId, chunk) => { asked.push(`${snapshotId}:${chunk}`); return chunk === 5 },
  })
  const snaps = [
    await volume.createSnapshot(new MemoryDevice(64 * CHUNK), { chunkSize: CHUNK }),
    await volume.createSnapshot(new MemoryDevice(64 * CHUNK), { chunkSize: CHUNK, persistent: false }),
  ]
  await Promise.all([3, 5, 7].map((chunk) => volume.write(at(chunk), new Uint8Array(512).fill(chunk))))
  for (const snap of snaps) {
    expect([3, 5, 7].map((chunk) => snap.chunkState(chunk))).toEqual(['Completed', 'Completed', 'Completed'])
    expect(snap.chunkState(4)).toBe('None')
  }
  // Asked once per actor made: each written chunk of each snapshot.
  expect(asked.sort()).toEqual(['snap-1:3', 'snap-1:5', 'snap-1:7', 'snap-2:3', 'snap-2:5', 'snap-2:7'])
  expect(new Set(events.map(idOf))).toEqual(new Set(['snap-1:5', 'snap-2:5']))
  for (const id of ['snap-1:5', 'snap-2:5']) {
    expect(statesSeen(events.filter((e) => idOf(e) === id))).toEqual(['None', 'Pending', 'Completed'])
  }
})

test('without inspect nothing is inspected, and inspectChunks alone changes nothing', async () => {
  let asked = 0
  const volume = await openOrigin(MemoryDevice.from(new Uint8Array(16 * CHUNK)), { inspectChunks: () => { asked++; return true } })
  const snap = await volume.createSnapshot(new MemoryDevice(64 * CHUNK), { chunkSize: CHUNK })
  await volume.write(at(1), new Uint8Array(512))
  expect(snap.chunkState(1)).toBe('Completed')
  expect(asked).toBe(0) // the filter is only consulted when there is an observer
})
