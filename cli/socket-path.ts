// cli/socket-path.ts: readies the unix socket path for `snapcow serve`. A socket a server still
// listens on is refused (never stolen), a stale one (nothing listens: its server died) is removed,
// and anything else at the path (a file, a symlink, a folder) is refused.
import { lstat, unlink } from 'node:fs/promises'
import net from 'node:net'
import { about, CliError } from './fail.js'

/** Whether a server accepts connections on the socket: only ECONNREFUSED says nobody listens. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code !== 'ECONNREFUSED'))
  })
}

/** Makes `path` free to listen on; returns whether a stale socket was removed. */
export async function claimSocketPath(path: string): Promise<{ removedStale: boolean }> {
  let stat
  try {
    stat = await lstat(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { removedStale: false }
    throw about(path, error)
  }
  if (!stat.isSocket()) throw new CliError(path, 'exists and is not a socket: choose another --socket (only a stale socket is replaced)')
  if (await listening(path)) throw new CliError(path, 'a server already listens on this socket: stop it first, or choose another --socket')
  try {
    await unlink(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw about(path, error)
  }
  return { removedStale: true }
}
