// The published package (`npm test` builds it first with tsup): ESM and CommonJS entries
// export the same names as index.ts, and declarations exist for both; the `snapcow` bin runs
// through npx from the repository.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, test } from 'vitest'
import * as source from '../../index.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const dist = path.join(root, 'dist')

test('dist/ is built (npm test runs tsup before vitest)', () => {
  for (const file of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts', 'test-suite.js', 'test-suite.cjs', 'test-suite.d.ts', 'nbd.js', 'nbd.cjs', 'nbd.d.ts']) {
    expect(existsSync(path.join(dist, file)), `dist/${file}`).toBe(true)
  }
})

test('ESM and CommonJS builds export what index.ts exports', () => {
  const names = Object.keys(source).sort()
  const load = (code: string) => JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd: root, encoding: 'utf8' })) as string[]
  const esm = load(`const m = await import('snapcow'); console.log(JSON.stringify(Object.keys(m).sort()))`)
  const cjs = load(`import { createRequire } from 'node:module'; const m = createRequire(import.meta.url)('snapcow'); console.log(JSON.stringify(Object.keys(m).sort()))`)
  expect(esm).toEqual(names)
  expect(cjs).toEqual(names)
  const suite = load(`import { createRequire } from 'node:module'; const m = createRequire(import.meta.url)('snapcow/test-suite'); console.log(JSON.stringify(Object.keys(m)))`)
  expect(suite).toContain('blockDeviceSuite')
  const nbd = load(`import { createRequire } from 'node:module'; const m = createRequire(import.meta.url)('snapcow/nbd'); console.log(JSON.stringify(Object.keys(m)))`)
  expect(nbd).toEqual(['serveNbd'])
  const nbdEsm = load(`const m = await import('snapcow/nbd'); console.log(JSON.stringify(Object.keys(m)))`)
  expect(nbdEsm).toEqual(['serveNbd'])
})

test('the CommonJS build reads a store like the source does', () => {
  const out = execFileSync(process.execPath, ['-e', `
    const { MemoryDevice, PersistentStore, readCowStore, asChunkSectors, asOldChunk } = require('snapcow')
    ;(async () => {
      const cow = new MemoryDevice(1 << 20)
      const store = await PersistentStore.create(cow, asChunkSectors(8))
      await store.commit(asOldChunk(5), store.allocate(), true)
      console.log(JSON.stringify((await readCowStore(cow)).exceptions))
    })()`], { cwd: root, encoding: 'utf8' })
  expect(JSON.parse(out)).toEqual([[5, 2]])
})

test('npx --no-install snapcow --help runs the package\'s bin from the repository', () => {
  const help = execFileSync('npx', ['--no-install', 'snapcow', '--help'], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  expect(help).toMatch(/^Usage: snapcow \[options\] \[command\]/)
  expect(help).toMatch(/serve \[options\] <ORIGIN> \[COW\.\.\.\]/)
})
