// bench/nbd/tools.ts: which outside programs the NBD benchmark needs, which Debian package
// brings each, and what is missing here, so a run can say what it skipped and how to install it.
import { spawnSync } from 'node:child_process'

export type Tool = 'fio' | 'nbdkit' | 'qemu-nbd' | 'qemu-img' | 'nbdcopy' | 'taskset'

const PACKAGE: Record<Tool, string> = {
  fio: 'fio', nbdkit: 'nbdkit', 'qemu-nbd': 'qemu-utils', 'qemu-img': 'qemu-utils', nbdcopy: 'libnbd-bin', taskset: 'util-linux',
}

export interface Tools {
  has(tool: Tool): boolean
  /** `fio fio-3.33`, … for the tools found (first line of their version output). */
  versions: string[]
  /** One line naming the missing tools and the apt-get command that installs them, or ''. */
  advice: string
}

const VERSION_ARG: Record<Tool, string> = { fio: '--version', nbdkit: '--version', 'qemu-nbd': '--version', 'qemu-img': '--version', nbdcopy: '--version', taskset: '--version' }

export function findTools(): Tools {
  const found = new Map<Tool, string>()
  for (const tool of Object.keys(PACKAGE) as Tool[]) {
    const r = spawnSync(tool, [VERSION_ARG[tool]], { encoding: 'utf8', timeout: 10_000 })
    if (r.error === undefined && r.status === 0) found.set(tool, (r.stdout || r.stderr).split('\n')[0]!.trim())
  }
  const missing = (Object.keys(PACKAGE) as Tool[]).filter((t) => !found.has(t))
  const packages = [...new Set(missing.map((t) => PACKAGE[t]))]
  const advice = missing.length === 0 ? '' :
    `missing: ${missing.join(', ')}; on Debian/Ubuntu: sudo apt-get install -y ${packages.join(' ')}`
  return { has: (tool) => found.has(tool), versions: [...found.values()], advice }
}
