// test/fuzz/regressions.test.ts: stores the fuzzer (stores.property.test.ts) found mishandled,
// pinned as plain tests; each names the seed that found it.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapcow-fuzz-regressions-'))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

function check(...args: string[]): { code: number | null; out: string; err: string } {
  const run = spawnSync(process.execPath, [BIN, 'check', ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
  return { code: run.status, out: run.stdout, err: run.stderr }
}

// SNAPCOW_FUZZ_SEED=1, store 27: a COW truncated to 0 bytes. check read a 512-byte header past
// the device's end, and the RangeError came out as a usage error (exit 2).
test('snapcow check of an empty COW file: exit 1, the device is too small for a header', () => {
  fs.writeFileSync(path.join(dir, 'empty.cow'), new Uint8Array(0))
  const run = check('empty.cow')
  expect(run).toMatchObject({ code: 1 })
  expect(run.out).toMatch(/DAMAGED.*\n.*the device \(0 bytes\) is too small to hold a snapshot header/)
  expect(run.err).toMatch(/^snapcow: empty\.cow: store is damaged/)
  const json = check('--json', 'empty.cow')
  expect(json.code).toBe(1)
  expect(JSON.parse(json.out)).toMatchObject({ sound: false, problems: [{ where: 'header, byte 0' }] })
})
