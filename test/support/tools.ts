// test/support/tools.ts: the Debian tools the tests drive (qemu-io, nbdinfo, fio, …): whether
// one is installed, and running one to the end with its exit code and output, never throwing.
import { execFile, spawnSync } from 'node:child_process'
import { promisify } from 'node:util'

/** True when `bin` is on the PATH. */
export const installed = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0

const exec = promisify(execFile)

/** Runs `bin` to the end: exit code (−1 if killed or not started), stdout + stderr, and stdout alone. */
export async function runTool(bin: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; out: string; stdout: string }> {
  try {
    const { stdout, stderr } = await exec(bin, args, { cwd: options.cwd, encoding: 'utf8', timeout: options.timeoutMs ?? 20_000, maxBuffer: 1 << 24 })
    return { code: 0, out: stdout + stderr, stdout }
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}`, stdout: err.stdout ?? '' }
  }
}
