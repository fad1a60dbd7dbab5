// The completed-exception table (spec §11): a model test against a Map (small keys, keys
// around 2^32, huge COW chunks, many deletes for backward shift, growth and shrinking),
// iteration, misuse, and the memory budget of ≤ 32 bytes per entry at 10^6 entries.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { CompletedTable } from '../../actors/completed-table.js'
import { asNewChunk, asOldChunk } from '../../io/units.js'

const HUGE = [2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40, Number.MAX_SAFE_INTEGER]

const chunk = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 63 }) },
  { weight: 2, arbitrary: fc.nat({ max: 63 }).map((k) => k * 65_536) }, // same low bits
  { weight: 2, arbitrary: fc.constantFrom(...HUGE) },
  { weight: 1, arbitrary: fc.nat({ max: 2 ** 32 + 8 }) },
)

type Op =
  | { kind: 'set'; old: number; newChunk: number }
  | { kind: 'get' | 'has' | 'delete'; old: number }
  | { kind: 'set-run' | 'delete-run'; old: number; count: number }
  | { kind: 'clear' }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), old: chunk, newChunk: chunk }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('get' as const, 'has' as const), old: chunk }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('delete' as const), old: chunk }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('set-run' as const, 'delete-run' as const),
    old: fc.oneof(fc.nat({ max: 200 }), fc.constant(2 ** 32 - 40)), count: fc.nat({ max: 150 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
)

function expectSame(table: CompletedTable, model: Map<number, number>): void {
  expect(table.size).toBe(model.size)
  const seen = new Map<number, number>()
  for (const [old, newChunk] of table) {
    expect(seen.has(old)).toBe(false)
    seen.set(old, newChunk)
  }
  expect(seen).toEqual(model)
  for (const [old, newChunk] of model) expect(table.get(asOldChunk(old))).toBe(newChunk)
}

describe('CompletedTable', () => {
  test('behaves like a Map under random set/get/has/delete', () => {
    fc.assert(fc.property(fc.oneof(fc.constant(0), fc.nat({ max: 100 })), fc.array(op, { maxLength: 300 }), (expected, ops) => {
      const table = new CompletedTable(expected)
      const model = new Map<number, number>()
      for (const o of ops) {
        switch (o.kind) {
          case 'set':
            table.set(asOldChunk(o.old), asNewChunk(o.newChunk))
            model.set(o.old, o.newChunk)
            break
          case 'get':
            expect(table.get(asOldChunk(o.old))).toBe(model.get(o.old))
            break
          case 'has':
            expect(table.has(asOldChunk(o.old))).toBe(model.has(o.old))
            break
          case 'delete':
            expect(table.delete(asOldChunk(o.old))).toBe(model.delete(o.old))
            expect(table.has(asOldChunk(o.old))).toBe(false)
            // Check now: a later resize would rehash and hide a broken backward shift.
            for (const [old, newChunk] of model) expect(table.get(asOldChunk(old))).toBe(newChunk)
            break
          case 'set-run':
            for (let i = 0; i < o.count; i++) {
              table.set(asOldChunk(o.old + i), asNewChunk(2 + i))
              model.set(o.old + i, 2 + i)
            }
            break
          case 'delete-run':
            for (let i = 0; i < o.count; i++) {
              expect(table.delete(asOldChunk(o.old + i))).toBe(model.delete(o.old + i))
            }
            break
          case 'clear':
            table.clear()
            model.clear()
            break
        }
        expect(table.size).toBe(model.size)
      }
      expectSame(table, model)
      for (const old of [0, 1, 63, 64, ...HUGE]) expect(table.get(asOldChunk(old))).toBe(model.get(old))
    }), { numRuns: 300 })
  })

  test('every delete leaves all other entries reachable (backward shift)', () => {
    const keys = fc.uniqueArray(fc.oneof(fc.nat({ max: 40 }), fc.constantFrom(...HUGE)), { minLength: 1, maxLength: 48 })
    fc.assert(fc.property(keys.chain((ks) => fc.tuple(fc.constant(ks), fc.shuffledSubarray(ks))), ([inserted, deleted]) => {
      const table = new CompletedTable()
      const model = new Map<number, number>()
      for (const [i, old] of inserted.entries()) {
        table.set(asOldChunk(old), asNewChunk(i))
        model.set(old, i)
      }
      for (const old of deleted) {
        expect(table.delete(asOldChunk(old))).toBe(true)
        expect(table.delete(asOldChunk(old))).toBe(false)
        model.delete(old)
        for (const [o, newChunk] of model) expect(table.get(asOldChunk(o))).toBe(newChunk)
      }
      expectSame(table, model)
    }), { numRuns: 500 })
  })

  test('a second set of the same origin chunk replaces its COW chunk', () => {
    const table = new CompletedTable()
    for (const [old, first, second] of [[5, 2, 3], [7, 2 ** 40, 4], [9, 4, 2 ** 40], [2 ** 40, 1, 2]] as const) {
      table.set(asOldChunk(old), asNewChunk(first)).set(asOldChunk(old), asNewChunk(second))
      expect(table.get(asOldChunk(old))).toBe(second)
    }
    expect(table.size).toBe(4)
  })

  test('iteration and forEach return every entry exactly once', () => {
    const table = new CompletedTable()
    const model = new Map<number, number>()
    for (let i = 0; i < 5000; i++) {
      const old = (i * 7919) % 100_003
      table.set(asOldChunk(old), asNewChunk(i + 2))
      model.set(old, i + 2)
    }
    for (const old of HUGE) {
      table.set(asOldChunk(old), asNewChunk(old))
      model.set(old, old)
    }
    for (let i = 0; i < 5000; i += 3) {
      const old = (i * 7919) % 100_003
      table.delete(asOldChunk(old))
      model.delete(old)
    }
    expectSame(table, model)
    const viaForEach: [number, number][] = []
    table.forEach((old, newChunk) => viaForEach.push([old, newChunk]))
    expect(viaForEach).toHaveLength(model.size)
    expect(new Map(viaForEach)).toEqual(model)
  })

  test('rejects chunks that are not non-negative safe integers', () => {
    const table = new CompletedTable()
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53, Infinity]) {
      expect(() => table.set(asOldChunk(bad), asNewChunk(1))).toThrow(RangeError)
      expect(() => table.set(asOldChunk(1), asNewChunk(bad))).toThrow(RangeError)
      expect(table.get(asOldChunk(bad))).toBeUndefined()
    }
    expect(table.size).toBe(0)
  })
})

describe('CompletedTable memory', () => {
  // --expose-gc without touching the shared config: the flag makes a fresh context get `gc`.
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const N = 1_000_000

  /** heapUsed + external; Node counts arrayBuffers inside external already (not added twice). */
  const used = (): number => {
    gc()
    gc()
    const m = process.memoryUsage()
    return m.heapUsed + m.external
  }

  const measure = (label: string, keys: Uint32Array): number => {
    const before = used()
    const table = new CompletedTable()
    for (let i = 0; i < keys.length; i++) table.set(asOldChunk(keys[i]!), asNewChunk(i + 2))
    const perEntry = (used() - before) / keys.length
    expect(table.size).toBe(keys.length)
    expect(table.get(asOldChunk(keys[12_345]!))).toBe(12_345 + 2)
    console.log(`completed table: ${keys.length} entries (${label}), ${perEntry.toFixed(1)} bytes each` +
      ` (estimate ${(table.heapBytes() / keys.length).toFixed(1)})`)
    return perEntry
  }

  const shuffled = (n: number, seed: number): Uint32Array => {
    const keys = new Uint32Array(n)
    for (let i = 0; i < n; i++) keys[i] = i
    let s = seed >>> 0
    for (let i = n - 1; i > 0; i--) {
      s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0 // LCG; top bits are good enough here
      const j = Math.floor((s / 2 ** 32) * (i + 1))
      const t = keys[i]!
      keys[i] = keys[j]!
      keys[j] = t
    }
    return keys
  }

  test('costs at most 32 bytes per entry at 10^6 entries, random order', () => {
    expect(measure('random order', shuffled(N, 42))).toBeLessThanOrEqual(32)
  })

  test('costs at most 32 bytes per entry at 10^6 entries, sequential order', () => {
    const keys = new Uint32Array(N)
    for (let i = 0; i < N; i++) keys[i] = i
    expect(measure('sequential', keys)).toBeLessThanOrEqual(32)
  })

  test('costs at most 32 bytes per entry at 10^6 entries, sparse random 32-bit chunks', () => {
    const keys = new Uint32Array(N)
    let s = 7
    for (let i = 0; i < N; i++) {
      // A full-period LCG never repeats a value within 2^32 steps, so the keys are distinct.
      s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0
      keys[i] = s === 0xffff_ffff ? 0 : s
    }
    expect(measure('sparse random', keys)).toBeLessThanOrEqual(32)
  })
})
