// test/nbd/tls-fixtures.ts: TLS credentials made at test time in nbdkit's layouts: a PSK file
// of `username:hexkey` lines (random key), and, when `openssl` is installed, a CA with a server
// certificate for localhost and a client certificate (plus a second, unrelated CA for refusals).
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
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

/** `dir/<role>-key.pem` and `dir/<role>-cert.pem`, signed by the CA in `dir`. */
function signed(dir: string, role: 'server' | 'client', subject: string, ext: string): void {
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${role}-key.pem`, '-out', `${role}.csr`, '-subj', subject], dir)
  writeFileSync(path.join(dir, `${role}.cnf`), `basicConstraints=CA:FALSE\n${ext}\n`)
  openssl(['x509', '-req', '-in', `${role}.csr`, '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${role}-cert.pem`, '-days', '2', '-extfile', `${role}.cnf`], dir)
}

/**
 * `dir` as nbdkit's --tls-certificates wants it: ca-cert.pem, server-cert.pem (CN and SAN
 * localhost, signed by that CA), server-key.pem; client-cert.pem and client-key.pem too, which
 * libnbd and qemu present when they find them. `caOnly` holds just the CA certificate (a client
 * without a certificate); `otherCa` just a ca-cert.pem of an unrelated CA.
 */
export function makeCertificates(dir: string, otherCa: string): { dir: string; otherCa: string; caOnly: string } {
  makeCa(dir, 'snapcow test CA')
  signed(dir, 'server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth')
  signed(dir, 'client', '/CN=snapcow test client', 'extendedKeyUsage=clientAuth')
  makeCa(otherCa, 'some other CA')
  const caOnly = `${dir}-ca-only`
  mkdirSync(caOnly, { recursive: true })
  copyFileSync(path.join(dir, 'ca-cert.pem'), path.join(caOnly, 'ca-cert.pem'))
  return { dir, otherCa, caOnly }
}
