// test/nbd/tls-fixtures.ts: TLS credentials made at test time in nbdkit's layouts: a PSK file
// of `username:hexkey` lines (random key), and, when `openssl` is installed, a CA with a server
// certificate for localhost (plus a second, unrelated CA for refusal tests).
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'

export const hasOpenssl = spawnSync('sh', ['-c', 'command -v openssl']).status === 0

/** Writes `dir/keys.psk` (the name qemu's tls-creds-psk looks for) holding `user`'s random 32-byte key. */
export function makePsk(dir: string, user = 'alice'): { file: string; user: string; key: Buffer } {
  mkdirSync(dir, { recursive: true })
  const key = randomBytes(32)
  const file = path.join(dir, 'keys.psk')
  writeFileSync(file, `${user}:${key.toString('hex')}\n`, { mode: 0o600 })
  return { file, user, key }
}

function openssl(args: string[], cwd: string): void {
  const run = spawnSync('openssl', args, { cwd, encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${run.stderr}`)
}

/** A CA in `dir/ca-key.pem` + `dir/ca-cert.pem` (nothing else in `dir`). */
function makeCa(dir: string, name: string): void {
  mkdirSync(dir, { recursive: true })
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem', '-days', '2', '-subj', `/CN=${name}`], dir)
}

/**
 * `dir` as nbdkit's --tls-certificates wants it: ca-cert.pem, server-cert.pem (CN and SAN
 * localhost, signed by that CA), server-key.pem. `otherCa` holds only a ca-cert.pem of an
 * unrelated CA, for clients that must refuse the server.
 */
export function makeCertificates(dir: string, otherCa: string): { dir: string; otherCa: string } {
  makeCa(dir, 'snapcow test CA')
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=localhost'], dir)
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'server-cert.pem', '-days', '2', '-extfile', 'ext.cnf'], dir)
  makeCa(otherCa, 'some other CA')
  return { dir, otherCa }
}
