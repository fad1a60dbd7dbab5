// test/io/file-lock.test.ts: FileDevice.open claims a writable device exclusively (io/file-lock.ts):
// a second writer in this process (same path, symlink, hard link) or in another process is
// refused with SNAPCOW_BUSY; readers never conflict; close() releases; a crashed holder's lock
// goes stale; lock: false opts out; a failed create leaves no file; a block device gets O_EXCL.
import { execFileSync, spawn } from 'node:child_process'
import { link, mkdir, mkdtemp, rm, stat, symlink, utimes } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { SnapcowError } from '../../io/errors.js'
import { FileDevice } from '../../io/file-device.js'
import { setLockStaleMs } from '../../io/file-lock.js'

const STALE_MS = 2000 // proper-lockfile's minimum: refreshed every second
setLockStaleMs(STALE_MS)

let dir = ''
let files = 0
const freshPath = (): string => join(dir, `device-${files++}.img`)
const created = (size = 8192) => {
  const path = freshPath()
  return { path, open: () => FileDevice.open(path, { create: true, size }) }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapcow-file-lock-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function rejection(p: Promise<unknown>): Promise<SnapcowError> {
  const error = await p.then(() => undefined, (e: unknown) => e)
  expect(error, 'expected a SnapcowError').toBeInstanceOf(SnapcowError)
  return error as SnapcowError
}

describe('within one process', () => {
  test('a second writer on the same path is refused with SNAPCOW_BUSY naming the file; close() releases it', async () => {
    const { path, open } = created()
    const first = await open()
    const error = await rejection(FileDevice.open(path))
    expect(error.code).toBe('SNAPCOW_BUSY')
    expect(error.message).toContain(path)
    await first.close()
    const second = await FileDevice.open(path) // released: the conformance suite's reopen relies on it
    await second.write(0, new Uint8Array(512).fill(1))
    await second.close()
  })

  test('a symlink and a hard link to an open file are the same file', async () => {
    const { path, open } = created()
    const first = await open()
    const viaSymlink = join(dir, `symlink-${files++}.img`)
    const viaHardLink = join(dir, `hardlink-${files++}.img`)
    await symlink(path, viaSymlink)
    await link(path, viaHardLink)
    expect((await rejection(FileDevice.open(viaSymlink))).code).toBe('SNAPCOW_BUSY')
    const hard = await rejection(FileDevice.open(viaHardLink))
    expect(hard.code).toBe('SNAPCOW_BUSY')
    expect(hard.message).toContain(path) // names the open one too
    await first.close()
    const again = await FileDevice.open(viaHardLink)
    await again.close()
  })

  test('two opens racing on one file: exactly one wins', async () => {
    const { path, open } = created()
    await (await open()).close()
    const results = await Promise.allSettled([FileDevice.open(path), FileDevice.open(path), FileDevice.open(path)])
    const won = results.filter((r) => r.status === 'fulfilled')
    expect(won).toHaveLength(1)
    for (const r of results) if (r.status === 'rejected') expect((r.reason as SnapcowError).code).toBe('SNAPCOW_BUSY')
    await (won[0] as PromiseFulfilledResult<FileDevice>).value.close()
  })

  test('read-only opens conflict neither with each other nor with a writer', async () => {
    const { path, open } = created()
    const writer = await open()
    const readerA = await FileDevice.open(path, { readOnly: true })
    const readerB = await FileDevice.open(path, { readOnly: true })
    await writer.write(0, new Uint8Array(512).fill(7))
    const back = new Uint8Array(512)
    await readerA.read(0, back)
    expect(back).toEqual(new Uint8Array(512).fill(7))
    await writer.close()
    const writer2 = await FileDevice.open(path) // readers still open: no conflict the other way either
    await Promise.all([writer2.close(), readerA.close(), readerB.close()])
  })

  test('the lock is the directory <real path>.lock while open, gone after close', async () => {
    const { path, open } = created()
    const device = await open()
    expect((await stat(`${path}.lock`)).isDirectory()).toBe(true)
    await device.close()
    expect(existsSync(`${path}.lock`)).toBe(false)
  })

  test('lock: false opts out: no lock is taken, and a second writer is let through', async () => {
    const path = freshPath()
    const first = await FileDevice.open(path, { create: true, size: 4096, lock: false })
    expect(existsSync(`${path}.lock`)).toBe(false)
    const second = await FileDevice.open(path, { lock: false })
    await Promise.all([first.close(), second.close()])
    await expect(FileDevice.open(path, { lock: 'no' as unknown as boolean })).rejects.toThrow(TypeError)
  })

  test('a lost lock (its directory removed under the open device) refuses later writes', async () => {
    const { path, open } = created()
    const device = await open()
    await rm(`${path}.lock`, { recursive: true })
    // proper-lockfile notices at its next refresh (every STALE_MS / 2).
    await vi.waitFor(async () => {
      const error = await rejection(device.write(0, new Uint8Array(512)))
      expect(error.code).toBe('SNAPCOW_BUSY')
      expect(error.message).toContain('lost its lock')
    }, { timeout: 4 * STALE_MS, interval: 100 })
    await device.close()
    await (await FileDevice.open(path)).close()
  })
})

describe('a lock left behind', () => {
  test('a fresh lock directory (a live writer elsewhere) refuses, and says what to do', async () => {
    const { path, open } = created()
    await (await open()).close()
    await mkdir(`${path}.lock`)
    const error = await rejection(FileDevice.open(path))
    expect(error.code).toBe('SNAPCOW_BUSY')
    expect(error.message).toContain(`${path}.lock`)
    expect(error.message).toMatch(/stale/)
    await rm(`${path}.lock`, { recursive: true })
  })

  test('a stale lock directory (its process died) is taken over', async () => {
    const { path, open } = created()
    await (await open()).close()
    await mkdir(`${path}.lock`)
    const past = new Date(Date.now() - 5 * STALE_MS)
    await utimes(`${path}.lock`, past, past)
    const device = await FileDevice.open(path)
    await device.close()
    expect(existsSync(`${path}.lock`)).toBe(false)
  })
})

describe('a failed create leaves no file behind', () => {
  test('when the size is too big for the file system', async () => {
    const path = freshPath()
    const huge = Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % 512) // ~8 PiB: EFBIG/EINVAL on ext4, xfs, tmpfs
    const error = await rejection(FileDevice.open(path, { create: true, size: huge }))
    expect(error.code).toBe('SNAPCOW_IO')
    expect(existsSync(path)).toBe(false)
    expect(existsSync(`${path}.lock`)).toBe(false) // the lock was released too
    await (await FileDevice.open(path, { create: true, size: 4096 })).close()
  })

  test('when the lock is held', async () => {
    const path = freshPath()
    await mkdir(`${path}.lock`) // another process is creating it
    const error = await rejection(FileDevice.open(path, { create: true, size: 4096 }))
    expect(error.code).toBe('SNAPCOW_BUSY')
    expect(existsSync(path)).toBe(false)
    await rm(`${path}.lock`, { recursive: true })
  })
})

// ---- another process ----

const FILE_DEVICE = fileURLToPath(new URL('../../io/file-device.ts', import.meta.url))
const FILE_LOCK = fileURLToPath(new URL('../../io/file-lock.ts', import.meta.url))

/** Runs `node -e script` with tsx (the sources, not the build); resolves with stdout once `until` is printed or it exits. */
function child(script: string, until?: string) {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    `import { FileDevice } from ${JSON.stringify(FILE_DEVICE)}\n` +
    `import { setLockStaleMs } from ${JSON.stringify(FILE_LOCK)}\nsetLockStaleMs(${STALE_MS})\n${script}`],
  { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const output = new Promise<string>((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (until !== undefined && out.includes(until)) resolve(out)
    })
    proc.stderr.on('data', (chunk: Buffer) => { err += chunk.toString() })
    proc.on('exit', () => (until === undefined ? resolve(out) : reject(new Error(`child exited: ${out}${err}`))))
  })
  return { proc, output }
}

describe('across processes', () => {
  test('another process opening a file this one writes gets SNAPCOW_BUSY naming it', async () => {
    const { path, open } = created()
    const device = await open()
    const { output } = child(`
      try { await FileDevice.open(${JSON.stringify(path)}); console.log('OPENED') }
      catch (e) { console.log(e.code, e.message) }
      try { const r = await FileDevice.open(${JSON.stringify(path)}, { readOnly: true }); console.log('READER OK'); await r.close() }
      catch (e) { console.log('READER', e.code) }`)
    const out = await output
    expect(out).toContain('SNAPCOW_BUSY')
    expect(out).toContain(path)
    expect(out).not.toContain('OPENED')
    expect(out).toContain('READER OK')
    await device.close()
  }, 30_000)

  test('a writer in a process that crashed: refused at first, taken over once its lock is stale', async () => {
    const { path, open } = created()
    await (await open()).close()
    const { proc, output } = child(`
      const d = await FileDevice.open(${JSON.stringify(path)}); console.log('HELD'); setInterval(() => {}, 1000)`, 'HELD')
    await output
    const busy = await rejection(FileDevice.open(path))
    expect(busy.code).toBe('SNAPCOW_BUSY')
    expect(busy.message).toContain(`${path}.lock`)
    proc.kill('SIGKILL') // no exit handler runs: the lock directory stays behind
    await new Promise((resolve) => proc.on('exit', resolve))
    expect(existsSync(`${path}.lock`)).toBe(true)
    let device: FileDevice | undefined
    await vi.waitFor(async () => { device = await FileDevice.open(path) }, { timeout: 5 * STALE_MS, interval: 200 })
    await device!.close()
  }, 30_000)

  test('waitForStaleLock: a killed holder is waited out until its lock is stale, once; a live one is still refused', async () => {
    const { path, open } = created()
    await (await open()).close()
    const live = child(`
      const d = await FileDevice.open(${JSON.stringify(path)}); console.log('HELD'); setInterval(() => {}, 1000)`, 'HELD')
    await live.output
    // Alive: its refresh (every STALE_MS / 2) shows it, and the open is refused.
    const started = Date.now()
    const busy = await rejection(FileDevice.open(path, { waitForStaleLock: true }))
    expect(busy.code).toBe('SNAPCOW_BUSY')
    expect(Date.now() - started).toBeLessThan(STALE_MS + 1000)
    live.proc.kill('SIGKILL')
    await new Promise((resolve) => live.proc.on('exit', resolve))
    expect(existsSync(`${path}.lock`)).toBe(true)
    // Killed: one open waits until the lock is stale and takes it over.
    const device = await FileDevice.open(path, { waitForStaleLock: true })
    await device.close()
    await expect(FileDevice.open(path, { waitForStaleLock: 'yes' as unknown as boolean })).rejects.toThrow(/waitForStaleLock must be a boolean/)
  }, 30_000)

  test('a process that exits normally without close() leaves no lock', async () => {
    const { path, open } = created()
    await (await open()).close()
    const { output } = child(`await FileDevice.open(${JSON.stringify(path)}); console.log('HELD'); process.exit(0)`)
    expect(await output).toContain('HELD')
    await (await FileDevice.open(path)).close()
  }, 30_000)
})

// ---- block devices: O_EXCL (needs root and a free loop device) ----

function loopDevice(file: string): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return undefined
  try {
    return execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return undefined
  }
}

describe('a block device', () => {
  let loop: string | undefined
  beforeAll(async () => {
    const backing = freshPath()
    await (await FileDevice.open(backing, { create: true, size: 1 << 20 })).close()
    loop = loopDevice(backing)
  })
  afterAll(() => {
    if (loop !== undefined) execFileSync('losetup', ['--detach', loop])
  })

  test('is claimed with O_EXCL: a second writer gets SNAPCOW_BUSY, readers and lock: false do not', async (context) => {
    if (loop === undefined) return context.skip('needs root and losetup (a loop device)')
    const first = await FileDevice.open(loop)
    expect(first.size).toBe(1 << 20)
    const error = await rejection(FileDevice.open(loop))
    expect(error.code).toBe('SNAPCOW_BUSY')
    expect(error.message).toContain(loop)
    expect(existsSync(`${loop}.lock`)).toBe(false) // no lock directory in /dev
    const reader = await FileDevice.open(loop, { readOnly: true })
    const unlocked = await FileDevice.open(loop, { lock: false })
    await Promise.all([reader.close(), unlocked.close(), first.close()])
    const again = await FileDevice.open(loop) // the kernel released the claim on close
    await again.close()
  })
})
