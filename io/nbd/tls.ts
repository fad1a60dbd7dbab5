// io/nbd/tls.ts: TLS for the NBD server (spec "TLS support", NBD_OPT_STARTTLS): checking and
// loading credentials in nbdkit's conventions (a certificate folder, or a PSK file of
// `username:hexkey` lines), and turning a plain socket into a server-side TLS socket once
// STARTTLS was acknowledged. The option haggling around it is in handshake.ts.

import { readFile } from 'node:fs/promises'
import path from 'node:path'
import type { Socket } from 'node:net'
import tls from 'node:tls'
import { SnapcowError } from '../errors.js'

/** `on`: clients may upgrade to TLS. `require`: nothing but STARTTLS or ABORT before TLS. */
export type NbdTlsMode = 'on' | 'require'

/** PEM certificates given directly instead of a folder. */
export interface NbdTlsCertificates {
  readonly key: string | Buffer
  readonly cert: string | Buffer
  /** The CA chain sent with the certificate (optional). */
  readonly ca?: string | Buffer
}

/** `serveNbd`'s `tls` option: a mode and exactly one kind of credentials. */
export interface NbdTlsOptions {
  readonly mode: NbdTlsMode
  /** A folder holding `ca-cert.pem`, `server-cert.pem` and `server-key.pem` (nbdkit's layout), or the PEMs. */
  readonly certificates?: string | NbdTlsCertificates
  /** A PSK file of `username:hexkey` lines (nbdkit's and qemu's `keys.psk`), or username → key. */
  readonly psk?: string | ReadonlyMap<string, Uint8Array>
  /** With `certificates`: clients must present a certificate the CA signed (nbdkit's --tls-verify-peer). Default false. */
  readonly verifyPeer?: boolean
}

/** Credentials loaded and checked: what each connection's upgrade needs. */
export interface TlsPolicy {
  readonly mode: NbdTlsMode
  readonly context: tls.SecureContext
  /** Username → key, in PSK mode. */
  readonly psk: ReadonlyMap<string, Buffer> | undefined
  /** Clients must present a certificate signed by the CA. */
  readonly verifyPeer: boolean
}

/** OpenSSL's longest pre-shared key (PSK_MAX_PSK_LEN). */
const MAX_PSK_BYTES = 512
/** The files of an nbdkit certificate folder. */
const CERT_FILES = { ca: 'ca-cert.pem', cert: 'server-cert.pem', key: 'server-key.pem' } as const
/**
 * PSK suites. TLS 1.3 takes the key through OpenSSL's PSK callback with its SHA-256 suites,
 * which gnutls (libnbd, qemu) negotiates; TLS 1.2 clients get the PSK and DHE/ECDHE-PSK suites.
 */
const PSK_CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-PSK-CHACHA20-POLY1305', 'DHE-PSK-AES256-GCM-SHA384', 'DHE-PSK-AES128-GCM-SHA256',
  'PSK-AES256-GCM-SHA384', 'PSK-AES128-GCM-SHA256', 'PSK-CHACHA20-POLY1305',
].join(':')

const fail = (message: string, cause?: unknown) => new SnapcowError('SNAPCOW_TLS_CREDENTIALS', message, cause === undefined ? undefined : { cause })

/** Misuse of the `tls` option: a TypeError/RangeError naming the value, before any I/O. */
export function checkTlsOptions(options: NbdTlsOptions): void {
  if (typeof options !== 'object' || options === null) throw new TypeError(`serveNbd tls must be { mode, certificates | psk }, not ${String(options)}`)
  const { mode, certificates, psk } = options
  if (mode !== 'on' && mode !== 'require') throw new TypeError(`serveNbd tls.mode must be 'on' or 'require', not ${JSON.stringify(mode)}`)
  if ((certificates === undefined) === (psk === undefined)) throw new TypeError('serveNbd tls needs exactly one of certificates (a folder or PEMs) or psk (a file or a Map)')
  if (certificates !== undefined && typeof certificates !== 'string') {
    if (typeof certificates !== 'object' || certificates === null || !isPem(certificates.key) || !isPem(certificates.cert) || (certificates.ca !== undefined && !isPem(certificates.ca))) {
      throw new TypeError('serveNbd tls.certificates must be a folder path or { key, cert, ca? } PEM strings or Buffers')
    }
  }
  if (typeof certificates === 'string' && certificates === '') throw new TypeError('serveNbd tls.certificates must be a folder path, not ""')
  if (options.verifyPeer !== undefined && typeof options.verifyPeer !== 'boolean') throw new TypeError(`serveNbd tls.verifyPeer must be a boolean, not ${String(options.verifyPeer)}`)
  if (options.verifyPeer === true) {
    if (certificates === undefined) throw new TypeError('serveNbd tls.verifyPeer goes with certificates (PSK already checks the client)')
    if (typeof certificates !== 'string' && certificates.ca === undefined) throw new TypeError('serveNbd tls.verifyPeer needs certificates.ca, the CA that signs client certificates')
  }
  if (typeof psk === 'string' && psk === '') throw new TypeError('serveNbd tls.psk must be a file path, not ""')
  if (psk !== undefined && typeof psk !== 'string') {
    if (!(psk instanceof Map)) throw new TypeError('serveNbd tls.psk must be a file path or a Map of username → key bytes')
    if (psk.size === 0) throw new RangeError('serveNbd tls.psk is empty: give at least one username')
    for (const [user, key] of psk) checkPskEntry(user, key, (m) => new RangeError(`serveNbd tls.psk ${m}`))
  }
}

function isPem(value: unknown): boolean {
  return (typeof value === 'string' && value !== '') || (Buffer.isBuffer(value) && value.length > 0)
}

function checkPskEntry(user: unknown, key: unknown, error: (message: string) => Error): void {
  if (typeof user !== 'string' || user === '' || user.includes(':') || /[\s]/.test(user)) throw error(`username ${JSON.stringify(user)} must be non-empty, without ':' or spaces`)
  if (!(key instanceof Uint8Array) || key.length === 0 || key.length > MAX_PSK_BYTES) throw error(`key of ${JSON.stringify(user)} must be 1 to ${MAX_PSK_BYTES} bytes`)
}

/**
 * Parses a PSK file (`username:hexkey` per line, as gnutls' psktool writes it; blank lines are
 * skipped). Throws SNAPCOW_TLS_CREDENTIALS naming the file and the line at fault.
 */
export function parsePskFile(text: string, file: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>()
  const lines = text.split('\n')
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, '').trim()
    if (line === '') continue
    const where = `TLS PSK file ${file} line ${i + 1}`
    const colon = line.indexOf(':')
    if (colon < 0) throw fail(`${where}: expected username:hexkey`)
    const user = line.slice(0, colon)
    const hex = line.slice(colon + 1)
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw fail(`${where}: the key of ${JSON.stringify(user)} is not an even number of hex digits`)
    checkPskEntry(user, Buffer.from(hex, 'hex'), (m) => fail(`${where}: ${m}`))
    if (keys.has(user)) throw fail(`${where}: username ${JSON.stringify(user)} appears twice`)
    keys.set(user, Buffer.from(hex, 'hex'))
  }
  if (keys.size === 0) throw fail(`TLS PSK file ${file} holds no username:hexkey line`)
  return keys
}

async function readCredential(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (cause as Error).message
    throw fail(`cannot read the TLS ${what} ${file}: ${why}`, cause)
  }
}

/** Reads and checks the credentials `options` name (after `checkTlsOptions`). */
export async function loadTls(options: NbdTlsOptions): Promise<TlsPolicy> {
  const base: tls.SecureContextOptions = { minVersion: 'TLSv1.2' }
  if (options.psk !== undefined) {
    const psk = typeof options.psk === 'string'
      ? parsePskFile((await readCredential(options.psk, 'PSK file')).toString('utf8'), options.psk)
      : new Map([...options.psk].map(([user, key]) => [user, Buffer.from(key)]))
    return { mode: options.mode, context: secureContext({ ...base, ciphers: PSK_CIPHERS }, 'PSK'), psk, verifyPeer: false }
  }
  const certificates = options.certificates!
  const pems = typeof certificates === 'string'
    ? {
        ca: await readCredential(path.join(certificates, CERT_FILES.ca), 'CA certificate'),
        cert: await readCredential(path.join(certificates, CERT_FILES.cert), 'server certificate'),
        key: await readCredential(path.join(certificates, CERT_FILES.key), 'server key'),
      }
    : certificates
  const where = typeof certificates === 'string' ? `in ${certificates}` : 'given'
  return { mode: options.mode, context: secureContext({ ...base, ...pems }, `certificates ${where}`), psk: undefined, verifyPeer: options.verifyPeer === true }
}

function secureContext(options: tls.SecureContextOptions, what: string): tls.SecureContext {
  try {
    return tls.createSecureContext(options)
  } catch (cause) {
    throw fail(`the TLS ${what} are not usable: ${(cause as Error).message}`, cause)
  }
}

/**
 * Starts the server's side of a TLS handshake on `socket` (after NBD_OPT_STARTTLS's ACK went
 * out) and returns the TLS socket at once, so the caller reads, writes and closes through it
 * from now on. `secure` resolves once the handshake is done; it rejects, leaving the caller to
 * drop the connection, when the client sends something other than TLS or its credentials fail.
 */
export function startTls(socket: Socket, policy: TlsPolicy): { socket: tls.TLSSocket; secure: Promise<void> } {
  const psk = policy.psk
  const wrapped = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: policy.context,
    // Node asks for a client certificate and fails the handshake without a valid one.
    ...(policy.verifyPeer ? { requestCert: true, rejectUnauthorized: true } : {}),
    ...(psk === undefined ? {} : { pskCallback: (_socket: tls.TLSSocket, identity: string) => psk.get(identity) ?? null }),
  })
  wrapped.on('error', () => {}) // a failed handshake is reported once, below; later errors end only this socket
  const secure = new Promise<void>((resolve, reject) => {
    const failed = (error: Error) => {
      wrapped.off('secure', done).off('error', failed).off('close', closed)
      wrapped.destroy()
      reject(error)
    }
    const done = () => { wrapped.off('error', failed).off('close', closed); resolve() }
    const closed = () => failed(new Error('the client closed during the TLS handshake'))
    wrapped.once('secure', done).once('error', failed).once('close', closed)
  })
  return { socket: wrapped, secure }
}
