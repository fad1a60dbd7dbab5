// test/journal/journal-file.test.ts: openOrigin's journal file never replaces an existing
// file unless told to (`ifExists: 'overwrite'`); devices and pipes are written as they are.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { SnapcowError } from '../../io/errors.js'
import { MemoryDevice } from '../../io/memory-device.js'
import { openOrigin } from '../../actors/origin-volume.js'

const dir = mkdtempSync(join(tmpdir(), 'snapcow-journal-file-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const OLD = '{"seq":1,"type":"open","size":512,"payloads":false}\n'

async function rejection(p: Promise<unknown>): Promise<Error> {
  const error = await p.then(() => undefined, (e: unknown) => e)
  expect(error, 'expected a rejection').toBeInstanceOf(Error)
  return error as Error
}

describe('journal: { path } on an existing file', () => {
  test.each([['by default', {}], ["with ifExists: 'fail'", { ifExists: 'fail' as const }]])(
    '%s: SNAPCOW_JOURNAL naming the path and the option, and the file is untouched', async (_how, extra) => {
      const path = join(dir, `kept-${Object.keys(extra).length}.jsonl`)
      writeFileSync(path, OLD)
      const error = await rejection(openOrigin(new MemoryDevice(4096), { journal: { path, ...extra } }))
      expect(error).toBeInstanceOf(SnapcowError)
      expect(error).toMatchObject({ code: 'SNAPCOW_JOURNAL' })
      expect(error.message).toContain(`journal file ${path} already exists`)
      expect(error.message).toContain("ifExists: 'overwrite'")
      expect(readFileSync(path, 'utf8')).toBe(OLD)
    })

  test("ifExists: 'overwrite' replaces it with this run's journal", async () => {
    const path = join(dir, 'replaced.jsonl')
    writeFileSync(path, OLD + OLD)
    const origin = await openOrigin(new MemoryDevice(4096), { journal: { path, ifExists: 'overwrite' } })
    await origin.close()
    expect(readFileSync(path, 'utf8')).toBe('{"seq":1,"type":"open","size":4096,"payloads":false}\n')
  })

  test('a device (/dev/null) is not a file to protect: it is written by default', async () => {
    const origin = await openOrigin(new MemoryDevice(4096), { journal: { path: '/dev/null' } })
    await origin.write(0, new Uint8Array(512))
    await origin.close()
    expect(origin.journal.entries().length).toBeGreaterThan(1)
  })
})

test('a new path is created', async () => {
  const path = join(dir, 'new.jsonl')
  const origin = await openOrigin(new MemoryDevice(4096), { journal: { path } })
  await origin.close()
  expect(readFileSync(path, 'utf8')).toBe('{"seq":1,"type":"open","size":4096,"payloads":false}\n')
})

test.each([['append', '"append"'], [true, 'true']] as const)('ifExists: %s is a TypeError naming the value; no file is made', async (ifExists, named) => {
  const path = join(dir, `bad-${String(ifExists)}.jsonl`)
  const error = await rejection(openOrigin(new MemoryDevice(4096), { journal: { path, ifExists: ifExists as unknown as 'fail' } }))
  expect(error).toBeInstanceOf(TypeError)
  expect(error.message).toBe(`journal.ifExists must be 'fail' or 'overwrite', got ${named}`)
  expect(existsSync(path)).toBe(false)
})
