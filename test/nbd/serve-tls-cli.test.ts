// `snapcow serve` with TLS flags (the built dist/cli.js, made by tsup before vitest): contradictory
// flags are usage errors (exit 2), bad credential files one line naming the file and line (exit 1),
// and `--tls require --tls-psk FILE` serves nbdinfo over TLS and nothing in plain text.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { CliError } from '../../cli/fail.js'
import { tlsOption } from '../../cli/serve.js'
import { makePsk } from './tls-fixtures.js'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js')
const hasNbdinfo = spawnSync('sh', ['-c', 'command -v nbdinfo']).status === 0
let dir: string
let psk: ReturnType<typeof makePsk>

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'snapcow-serve-tls-'))
  writeFileSync(path.join(dir, 'origin.img'), Buffer.alloc(1 << 20, 0x5a))
  psk = makePsk(path.join(dir, 'psk'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function serve(...args: string[]): { code: number | null; err: string } {
  const run = spawnSync(process.execPath, [BIN, 'serve', 'origin.img', '--socket', path.join(dir, 'x.sock'), ...args], { cwd: dir, encoding: 'utf8', timeout: 9_000 })
  return { code: run.status, err: run.stderr }
}

test('contradictory TLS flags are usage errors (exit 2) naming the problem', () => {
  const cases: Array<[Parameters<typeof tlsOption>[0], RegExp]> = [
    [{ tls: 'on' }, /^--tls on needs --tls-certificates DIR or --tls-psk FILE$/],
    [{ tls: 'maybe', tlsPsk: psk.file }, /--tls maybe is not off, on or require/],
    [{ tls: 'off', tlsPsk: psk.file }, /--tls off contradicts --tls-psk/],
    [{ tlsPsk: psk.file, tlsCertificates: dir }, /not both/],
    [{ tlsPsk: psk.file, tlsVerifyPeer: true }, /--tls-verify-peer goes with --tls-certificates DIR/],
  ]
  for (const [flags, message] of cases) {
    let error: unknown
    try { tlsOption(flags) } catch (e) { error = e }
    expect(error, JSON.stringify(flags)).toBeInstanceOf(CliError)
    expect((error as CliError).exitCode).toBe(2)
    expect((error as Error).message, JSON.stringify(flags)).toMatch(message)
  }
  expect(tlsOption({})).toBeUndefined()
  expect(tlsOption({ tlsPsk: 'k.psk' })).toEqual({ mode: 'on', psk: 'k.psk' })
  expect(tlsOption({ tls: 'require', tlsCertificates: 'pki', tlsVerifyPeer: true })).toEqual({ mode: 'require', certificates: 'pki', verifyPeer: true })
  // And through the program: usage, exit 2.
  const run = serve('--tls', 'require')
  expect(run.code).toBe(2)
  expect(run.err).toBe('snapcow: --tls require needs --tls-certificates DIR or --tls-psk FILE\n')
})

test('a missing credential file or a bad PSK line is one line naming it (exit 1)', () => {
  const missing = serve('--tls-psk', 'nope.psk')
  expect(missing.code).toBe(1)
  expect(missing.err).toBe('snapcow: cannot read the TLS PSK file nope.psk: no such file\n')
  const noCerts = serve('--tls', 'require', '--tls-certificates', path.join(dir, 'psk'))
  expect(noCerts.code).toBe(1)
  expect(noCerts.err).toMatch(/^snapcow: cannot read the TLS CA certificate .*ca-cert\.pem: no such file\n$/)
  writeFileSync(path.join(dir, 'bad.psk'), `alice:${'ab'.repeat(16)}\nbob ${'cd'.repeat(16)}\n`)
  const bad = serve('--tls-psk', 'bad.psk')
  expect(bad.code).toBe(1)
  expect(bad.err).toBe('snapcow: TLS PSK file bad.psk line 2: expected username:hexkey\n')
})

test.runIf(hasNbdinfo)('--tls require --tls-psk serves nbdinfo over TLS and nothing in plain text; SIGINT stops it', async () => {
  const socket = path.join(dir, 'tls.sock')
  const checks: Array<ReturnType<typeof spawnSync>> = []
  const child = spawn(process.execPath, [BIN, 'serve', 'origin.img', '--socket', socket, '--tls', 'require', '--tls-psk', psk.file], { cwd: dir })
  let out = ''
  const code = await new Promise<number | null>((resolve) => {
    child.stdout.on('data', (data: Buffer) => {
      out += data.toString()
      if (checks.length > 0 || !out.includes('serving')) return
      const nbdinfo = (uri: string) => spawnSync('nbdinfo', ['--size', uri], { encoding: 'utf8', timeout: 5_000 })
      checks.push(nbdinfo(`nbds+unix://${psk.user}@/origin?socket=${socket}&tls-psk-file=${psk.file}`))
      checks.push(nbdinfo(`nbd+unix:///origin?socket=${socket}`))
      child.kill('SIGINT')
    })
    child.on('close', resolve)
  })
  expect(code).toBe(0)
  expect(out).toMatch(/serving origin on .*tls\.sock, TLS required/)
  expect(checks[0]!.stdout.toString().trim(), checks[0]!.stderr.toString()).toBe(String(1 << 20))
  expect(checks[1]!.status).not.toBe(0)
  expect(checks[1]!.stdout.toString()).toBe('')
}, 10_000)
