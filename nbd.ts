// nbd.ts: the `snapcow/nbd` sub-entry, an NBD server for any BlockDevice (io/nbd/, docs/nbd.md).

export { serveNbd } from './io/nbd/server.js'
export type { NbdServer, ServeNbdOptions } from './io/nbd/server.js'
export type { NbdTlsCertificates, NbdTlsMode, NbdTlsOptions } from './io/nbd/tls.js'
