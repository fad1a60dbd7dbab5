// cli/serve.ts: `snapcow serve`: the origin and each snapshot stored on a COW file, exported
// over NBD (snapcow/nbd) as `origin` and one export per snapshot, named after its COW file.
// Runs until SIGINT or SIGTERM, then lets requests in flight finish and closes everything.
// TLS flags follow nbdkit's: --tls off|on|require, --tls-certificates DIR, --tls-psk FILE.
import { basename, extname } from 'node:path'
import type { Command } from 'commander'
import { openOrigin, SnapcowError } from '../index.js'
import type { BlockDevice, Origin } from '../index.js'
import { serveNbd, type NbdTlsOptions } from '../nbd.js'
import { CliError, on, usage } from './fail.js'
import { formatBytes, parseSize } from './sizes.js'
import { claimSocketPath } from './socket-path.js'
import { openReadOnly, openWritable } from './store.js'

interface ServeOptions { socket?: string; port?: string; bind?: string; readOnly?: boolean; maxBuffered?: string; tls?: string; tlsCertificates?: string; tlsPsk?: string; tlsVerifyPeer?: boolean }

/** The largest NBD request (32 MiB): --max-buffered must leave room for one. */
const MAX_REQUEST_BYTES = 32 * 1024 * 1024

/** serveNbd's `tls` from the flags (undefined: no TLS), or a usage error naming the contradiction. */
export function tlsOption(options: Pick<ServeOptions, 'tls' | 'tlsCertificates' | 'tlsPsk' | 'tlsVerifyPeer'>): NbdTlsOptions | undefined {
  const { tls, tlsCertificates: certificates, tlsPsk: psk } = options
  if (options.tlsVerifyPeer === true && certificates === undefined) throw usage(undefined, '--tls-verify-peer goes with --tls-certificates DIR')
  if (tls !== undefined && tls !== 'off' && tls !== 'on' && tls !== 'require') throw usage(undefined, `--tls ${tls} is not off, on or require`)
  if (certificates !== undefined && psk !== undefined) throw usage(undefined, 'give --tls-certificates DIR or --tls-psk FILE, not both')
  const credentials = certificates !== undefined ? { certificates } : psk !== undefined ? { psk } : undefined
  if (tls === 'off') {
    if (credentials !== undefined) throw usage(undefined, `--tls off contradicts ${certificates !== undefined ? '--tls-certificates' : '--tls-psk'}`)
    return undefined
  }
  if (credentials === undefined) {
    if (tls !== undefined) throw usage(undefined, `--tls ${tls} needs --tls-certificates DIR or --tls-psk FILE`)
    return undefined
  }
  return { mode: tls ?? 'on', ...credentials, ...(options.tlsVerifyPeer === true ? { verifyPeer: true } : {}) }
}

/** Export names from COW file names (`snap.cow` → `snap`), made unique, never `origin`. */
export function exportNames(cows: readonly string[]): string[] {
  const taken = new Set(['origin'])
  return cows.map((cow) => {
    const stem = basename(cow, extname(cow)) || 'snapshot'
    let name = stem
    for (let n = 2; taken.has(name); n++) name = `${stem}-${n}`
    taken.add(name)
    return name
  })
}

export function registerServe(program: Command): void {
  program.command('serve')
    .description('export ORIGIN and the snapshot on each COW over NBD (exports: origin, and each COW file\'s name without its extension)')
    .argument('<ORIGIN>', 'the origin image')
    .argument('[COW...]', 'COW images holding persistent stores (snapcow create)')
    .option('--socket <path>', 'a unix socket to listen on (created 0600)')
    .option('--port <n>', 'a TCP port to listen on')
    .option('--bind <addr>', 'the TCP address to listen on (default 127.0.0.1)')
    .option('--read-only', 'export every volume read-only')
    .option('--max-buffered <size>', 'what all clients together may make the server hold before they wait (default 256M, at least 32M)')
    .option('--tls <mode>', 'off, on (clients may use TLS) or require (nothing but TLS); default on with credentials, else off')
    .option('--tls-certificates <dir>', 'TLS with X.509: a folder with ca-cert.pem, server-cert.pem and server-key.pem (as nbdkit)')
    .option('--tls-psk <file>', 'TLS with pre-shared keys: a file of username:hexkey lines (as nbdkit; psktool makes one)')
    .option('--tls-verify-peer', 'with --tls-certificates: clients need a certificate signed by ca-cert.pem')
    .addHelpText('after', [
      '', 'Examples:',
      '  $ snapcow serve origin.img snap.cow --socket /tmp/snapcow.sock',
      "  $ nbdinfo 'nbd+unix:///snap?socket=/tmp/snapcow.sock'",
      '  $ snapcow serve origin.img snap.cow --port 10809',
      '  $ qemu-img convert -f raw nbd://127.0.0.1:10809/snap backup.img',
      '  $ snapcow serve origin.img snap.cow --socket /tmp/snapcow.sock --tls require --tls-psk keys.psk',
      "  $ nbdinfo 'nbds+unix://alice@/snap?socket=/tmp/snapcow.sock&tls-psk-file=keys.psk'",
    ].join('\n'))
    .action(async (originPath: string, cows: string[], options: ServeOptions) => {
      if ((options.socket === undefined) === (options.port === undefined)) throw usage(undefined, 'serve needs exactly one of --socket PATH or --port N')
      const port = options.port === undefined ? undefined : Number(options.port)
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw usage(undefined, `--port ${options.port} is not a TCP port (0–65535)`)
      if (options.bind !== undefined && port === undefined) throw usage(undefined, '--bind goes with --port')
      const tls = tlsOption(options)
      const maxBufferedBytes = options.maxBuffered === undefined ? undefined : parseSize(options.maxBuffered, '--max-buffered')
      if (maxBufferedBytes !== undefined && maxBufferedBytes < MAX_REQUEST_BYTES) {
        throw usage(undefined, `--max-buffered ${options.maxBuffered} is less than one largest request (${formatBytes(MAX_REQUEST_BYTES)})`)
      }
      const readOnly = options.readOnly === true
      // before any file is opened: a busy socket is refused without touching the images
      if (options.socket !== undefined && (await claimSocketPath(options.socket)).removedStale) {
        console.log(`removed the stale socket ${options.socket} (no server listened on it)`)
      }
      const devices: BlockDevice[] = []
      let origin: Origin | undefined
      try {
        // as the other commands open files: a missing or misaligned image is one plain line, exit 1
        const open = readOnly ? openReadOnly : openWritable
        const originDevice = await open(originPath)
        devices.push(originDevice)
        origin = await on(originPath, () => openOrigin(originDevice))
        const exports: Record<string, { device: BlockDevice; readOnly: boolean }> = { origin: { device: origin, readOnly } }
        const names = exportNames(cows)
        for (const [i, cow] of cows.entries()) {
          const cowDevice = await open(cow)
          devices.push(cowDevice)
          exports[names[i]!] = { device: await on(cow, () => origin!.loadSnapshot(cowDevice, { name: names[i]! })), readOnly }
        }
        const where = options.socket !== undefined ? options.socket : `${options.bind ?? '127.0.0.1'}:${port}`
        const server = await on(where, async () => {
          try {
            return await serveNbd({ exports, ...(tls === undefined ? {} : { tls }), ...(maxBufferedBytes === undefined ? {} : { maxBufferedBytes }),
              ...(options.socket !== undefined ? { socket: options.socket } : { port: port!, host: options.bind ?? '127.0.0.1' }) })
          } catch (error) {
            // The message names the credential file and, for a PSK file, the line.
            if (error instanceof SnapcowError && error.code === 'SNAPCOW_TLS_CREDENTIALS') throw new CliError(undefined, error.message, 1, { cause: error })
            throw error
          }
        })
        if (options.bind !== undefined && options.bind !== '127.0.0.1' && options.bind !== '::1' && options.bind !== 'localhost') {
          // Only PSK with `require` checks who the client is; X.509 here authenticates the server alone.
          const who = tls?.mode === 'require' && tls.psk !== undefined ? 'anyone holding a key from the PSK file'
            : tls?.mode === 'require' && tls.verifyPeer === true ? 'anyone holding a client certificate the CA signed'
            : tls?.mode === 'require' ? 'anyone who can reach it (TLS encrypts, but client certificates are not checked)'
              : 'anyone who can reach it'
          console.log(`warning: listening on ${options.bind}, not only this machine: ${who} can read${readOnly ? '' : ' and write'} these images`)
        }
        const tlsNote = tls === undefined ? '' : tls.mode === 'require' ? ', TLS required' : ', TLS optional'
        console.log(`serving ${Object.keys(exports).join(', ')} on ${server.address}${readOnly ? ' (read-only)' : ''}${tlsNote}; Ctrl-C stops`)
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve)
          process.once('SIGTERM', resolve)
        })
        await server.close()
        for (const volume of [origin, ...origin.snapshots]) await on(originPath, () => volume.flush())
        console.log('stopped: requests in flight finished, every write flushed')
      } finally {
        await origin?.close()
        for (const device of devices) await device.close()
      }
    })
}
