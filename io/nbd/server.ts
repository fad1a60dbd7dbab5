// io/nbd/server.ts: serveNbd, the `snapcow/nbd` entry: a net.Server on a unix socket (mode
// 0600) or on TCP (127.0.0.1 unless told otherwise) serving any BlockDevice by export name,
// optionally with TLS (tls.ts). Connections are independent; see connection.ts for one client's life.

import { chmod } from 'node:fs/promises'
import net from 'node:net'
import type { BlockDevice } from '../block-device.js'
import { NbdConnection } from './connection.js'
import type { NbdExport } from './handshake.js'
import { BufferBudget } from './buffer-budget.js'
import { MAX_BLOCK_BYTES, MAX_NAME_BYTES, MIN_BLOCK_BYTES } from './protocol.js'
import { checkTlsOptions, loadTls, type NbdTlsOptions, type TlsPolicy } from './tls.js'

/** What `serveNbd` serves and where. Give `socket`, or `port` (and optionally `host`). */
export interface ServeNbdOptions {
  /** Export name → device, or device with `readOnly` (default false: writable). */
  readonly exports: Readonly<Record<string, BlockDevice | { readonly device: BlockDevice; readonly readOnly?: boolean }>>
  /** Unix socket path; created with mode 0600. It must not exist yet. */
  readonly socket?: string
  /** TCP port (0 picks a free one; see `address`). */
  readonly port?: number
  /** TCP address to bind; default 127.0.0.1. */
  readonly host?: string
  /**
   * TLS through NBD_OPT_STARTTLS (default: none, STARTTLS is refused with ERR_POLICY). `mode`
   * `on` lets clients choose; `require` answers every option but STARTTLS and ABORT with
   * ERR_TLS_REQD until TLS is up. Credentials: `certificates` (an nbdkit folder with
   * ca-cert.pem, server-cert.pem, server-key.pem, or `{ key, cert, ca? }` PEMs) or `psk` (a
   * file of `username:hexkey` lines, or a Map of username → key).
   */
  readonly tls?: NbdTlsOptions
  /**
   * Milliseconds a client may take from connecting to choosing an export (TLS included); one
   * that takes longer is dropped, so idle half-open clients cannot pile up. Default 10 000
   * (qemu-nbd's); `Infinity` turns it off.
   */
  readonly handshakeTimeoutMs?: number
  /**
   * Bytes all clients together may make the server hold (WRITE payloads until the device is
   * done, READ replies until the socket has taken them) before clients that hold some stop
   * having new requests read; each client is held to 64 MiB as well. Default 256 MiB.
   */
  readonly maxBufferedBytes?: number
}

/** A running server. */
export interface NbdServer {
  /** The socket path, or `host:port` for TCP (with the real port when 0 was asked). */
  readonly address: string
  /** Stops accepting, lets each client's requests in flight finish, then closes every connection. Devices stay open. */
  close(): Promise<void>
  /** Bytes the clients make the server hold now (see `maxBufferedBytes`); 0 when every client is idle. */
  readonly bufferedBytes: number
}

/** How long a client may take to pick an export unless serveNbd is told otherwise (qemu-nbd's 10 s). */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000
/** What all clients together may make the server hold before they wait (see maxBufferedBytes). */
const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024

function isDevice(value: unknown): value is BlockDevice {
  const d = value as BlockDevice | null
  return typeof d === 'object' && d !== null && typeof d.read === 'function' && typeof d.write === 'function' && typeof d.flush === 'function' && typeof d.size === 'number'
}

function exportTable(exports: ServeNbdOptions['exports']): Map<string, NbdExport> {
  if (typeof exports !== 'object' || exports === null) throw new TypeError(`serveNbd exports must be an object of name → device, not ${String(exports)}`)
  const table = new Map<string, NbdExport>()
  for (const [name, entry] of Object.entries(exports)) {
    if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) throw new RangeError(`serveNbd export name ${JSON.stringify(name.slice(0, 40))}… is longer than ${MAX_NAME_BYTES} bytes`)
    const device = isDevice(entry) ? entry : (entry as { device?: unknown }).device
    if (!isDevice(device)) throw new TypeError(`serveNbd export ${JSON.stringify(name)} is not a BlockDevice (or { device, readOnly })`)
    if (!Number.isSafeInteger(device.size) || device.size < 0 || device.size % MIN_BLOCK_BYTES !== 0) {
      throw new RangeError(`serveNbd export ${JSON.stringify(name)} has size ${device.size}, not a multiple of ${MIN_BLOCK_BYTES}`)
    }
    const readOnly = isDevice(entry) ? false : (entry as { readOnly?: unknown }).readOnly ?? false
    if (typeof readOnly !== 'boolean') throw new TypeError(`serveNbd export ${JSON.stringify(name)} readOnly must be a boolean, not ${String(readOnly)}`)
    table.set(name, { name, device, readOnly })
  }
  if (table.size === 0) throw new RangeError('serveNbd exports is empty: give at least one export')
  return table
}

/**
 * Serves every export over NBD (fixed newstyle; see docs/nbd.md for what is supported).
 * @example
 * const server = await serveNbd({ exports: { origin }, socket: '/tmp/snapcow.sock' })
 * // nbdinfo 'nbd+unix:///origin?socket=/tmp/snapcow.sock'
 * await server.close()
 */
export async function serveNbd(options: ServeNbdOptions): Promise<NbdServer> {
  const table = exportTable(options?.exports)
  const { socket, port, host = '127.0.0.1' } = options
  if ((socket === undefined) === (port === undefined)) throw new TypeError('serveNbd needs exactly one of socket (a path) or port')
  if (socket !== undefined && (typeof socket !== 'string' || socket === '')) throw new TypeError(`serveNbd socket must be a path, not ${String(socket)}`)
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new RangeError(`serveNbd port ${port} is not 0-65535`)
  if (typeof host !== 'string' || host === '') throw new TypeError(`serveNbd host must be an address, not ${String(host)}`)
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
  if (typeof handshakeTimeoutMs !== 'number' || !(handshakeTimeoutMs > 0)) {
    throw new RangeError(`serveNbd handshakeTimeoutMs must be a positive number of milliseconds (or Infinity), not ${String(options.handshakeTimeoutMs)}`)
  }
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES
  if (typeof maxBufferedBytes !== 'number' || !Number.isSafeInteger(maxBufferedBytes) || maxBufferedBytes < MAX_BLOCK_BYTES) {
    throw new RangeError(`serveNbd maxBufferedBytes must be a whole number of bytes of at least ${MAX_BLOCK_BYTES} (one largest request), not ${String(options.maxBufferedBytes)}`)
  }
  if (options.tls !== undefined) checkTlsOptions(options.tls)
  // Credentials are read before anything listens: a bad file fails serveNbd, not each client.
  const tls: TlsPolicy | undefined = options.tls === undefined ? undefined : await loadTls(options.tls)

  const connections = new Set<NbdConnection>()
  const budget = new BufferBudget(maxBufferedBytes)
  const server = net.createServer((client) => {
    client.setNoDelay(true)
    const connection = new NbdConnection(client, table, tls, handshakeTimeoutMs, budget)
    connections.add(connection)
    void connection.closed.then(() => connections.delete(connection))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    const done = () => { server.off('error', reject); resolve() }
    if (socket !== undefined) server.listen({ path: socket, readableAll: false, writableAll: false }, done)
    else server.listen({ port, host }, done)
  })
  server.on('error', () => {}) // after listening, errors belong to single connections

  const stop = async (): Promise<void> => {
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
    await Promise.all([...connections].map((c) => c.close()))
    await stopped
  }

  let address: string
  if (socket !== undefined) {
    try {
      await chmod(socket, 0o600)
    } catch (cause) {
      await stop()
      throw cause
    }
    address = socket
  } else {
    const bound = server.address() as net.AddressInfo
    address = bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`
  }

  let closing: Promise<void> | undefined
  return {
    address,
    close: () => (closing ??= stop()),
    get bufferedBytes() { return budget.used },
  }
}
