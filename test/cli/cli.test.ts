// test/cli/cli.test.ts: the built `snapcow` program (dist/cli.js, made by tsup before vitest):
// each command's happy path and error paths, exit codes and messages, `check` on stores damaged
// on purpose, and `status`/`table`/`check` against the kernel's vectors.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FileDevice, openOrigin } from '../../index.js'
import { kernelVectors } from '../support/kernel-vectors.js'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js')
let dir: string

function snapcow(...args: string[]): { code: number | null; out: string; err: string } {
  const run = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
  return { code: run.status, out: run.stdout, err: run.stderr }
}
const file = (name: string): string => path.join(dir, name)

/** Runs the program without blocking; `onOut` sees stdout as it comes (to send a signal mid-run). */
function snapcowAsync(args: string[], onOut?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: dir })
    let out = ''
    let err = ''
    child.stdout.on('data', (data: Buffer) => { out += data.toString(); onOut?.(out, child) })
    child.stderr.on('data', (data: Buffer) => { err += data.toString() })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, out, err }))
  })
}

/** An 8 MiB origin and a 1 MiB COW whose store remaps chunks 0-9 and 100 (origin writes). */
async function storeWithExceptions(name: string): Promise<void> {
  fs.writeFileSync(file(`${name}.img`), Buffer.alloc(8 << 20, 0x11))
  const originDevice = await FileDevice.open(file(`${name}.img`))
  const cowDevice = await FileDevice.open(file(`${name}.cow`), { create: true, size: 1 << 20 })
  const origin = await openOrigin(originDevice, { journal: false })
  await origin.createSnapshot(cowDevice)
  await origin.write(0, new Uint8Array(10 * 4096).fill(0x22))
  await origin.write(100 * 4096, new Uint8Array(4096).fill(0x33))
  await origin.close()
  await cowDevice.close()
  await originDevice.close()
}

/** Overwrites record `slot` of area 0 of a 4 KiB-chunk store. */
function setRecord(cow: string, slot: number, oldChunk: number | bigint, newChunk: number | bigint): void {
  const fd = fs.openSync(file(cow), 'r+')
  const record = Buffer.alloc(16)
  record.writeBigUInt64LE(BigInt(oldChunk), 0)
  record.writeBigUInt64LE(BigInt(newChunk), 8)
  fs.writeSync(fd, record, 0, 16, 4096 + slot * 16)
  fs.closeSync(fd)
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapcow-cli-'))
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run tsup (npm test does) first`)
  await storeWithExceptions('base')
})
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

describe('snapcow create', () => {
  it('creates a store, then refuses to overwrite it without --force, and writes nothing when refused', () => {
    fs.writeFileSync(file('o.img'), Buffer.alloc(4 << 20))
    expect(snapcow('create', 'o.img', 'c.cow').err).toBe('snapcow: c.cow: no such file (give --size to create it)\n')
    const made = snapcow('create', 'o.img', 'c.cow', '--size', '1M')
    expect(made.code).toBe(0)
    expect(fs.readFileSync(file('c.cow')).subarray(0, 4).toString('latin1')).toBe('SnAp')
    const before = fs.readFileSync(file('c.cow'))
    const again = snapcow('create', 'o.img', 'c.cow', '--chunk-size', '8k')
    expect(again.code).toBe(1)
    expect(again.err).toMatch(/^snapcow: c\.cow: already holds a snapshot store: give --force/)
    expect(fs.readFileSync(file('c.cow')).equals(before)).toBe(true)
    expect(snapcow('create', 'o.img', 'c.cow', '--chunk-size', '8k', '--force').code).toBe(0)
    expect(snapcow('table', 'o.img', 'c.cow').out).toBe('0 8192 snapshot o.img c.cow P 16\n')
  })

  it('refuses a too-small COW naming the minimum, a bad chunk size and --transient (usage: exit 2)', () => {
    fs.writeFileSync(file('o2.img'), Buffer.alloc(1 << 20))
    const small = snapcow('create', 'o2.img', 'tiny.cow', '--size', '8k')
    expect([small.code, small.err]).toEqual([2, 'snapcow: tiny.cow: --size 8 KiB is too small: a store of 4096-byte chunks needs at least 12288 bytes (12 KiB)\n'])
    expect(fs.existsSync(file('tiny.cow'))).toBe(false)
    fs.writeFileSync(file('small.cow'), Buffer.alloc(8192))
    const existing = snapcow('create', 'o2.img', 'small.cow')
    expect(existing.code).toBe(1)
    expect(existing.err).toMatch(/small\.cow: too small: 8192 bytes, .* at least 12288 bytes/)
    expect(fs.readFileSync(file('small.cow')).every((b) => b === 0)).toBe(true)
    expect(snapcow('create', 'o2.img', 'small.cow', '--chunk-size', '3k').code).toBe(2)
    const transient = snapcow('create', 'o2.img', 'small.cow', '--transient')
    expect(transient.code).toBe(2)
    expect(transient.err).toMatch(/transient store lives only in the memory/)
    const missing = snapcow('create', 'o2.img')
    expect([missing.code, missing.err.split('\n')[0]]).toEqual([2, "snapcow: missing required argument 'COW'"])
  })
})

describe('reading commands', () => {
  it('info, map and status describe a store with exceptions', () => {
    const info = JSON.parse(snapcow('info', '--json', 'base.cow').out) as Record<string, unknown>
    expect(info).toMatchObject({ valid: true, chunkSectors: 8, exceptions: 11, metadataAreas: 1, nextFreeChunk: 13, totalChunks: 256 })
    expect(info['fillPercent']).toBe(5.1)
    const map = JSON.parse(snapcow('map', '--json', 'base.cow').out) as { extents: Array<{ originChunk: number; chunks: number }> }
    expect(map.extents.map((e) => [e.originChunk, e.chunks])).toEqual([[0, 10], [100, 1]])
    expect(snapcow('status', 'base.img', 'base.cow').out).toBe('0 16384 snapshot 104/2048 16\n')
  })

  it('errors name the file: missing, wrong magic, no store, misaligned size, a directory', () => {
    expect(snapcow('info', 'nope.cow')).toMatchObject({ code: 1, err: 'snapcow: nope.cow: no such file\n' })
    fs.writeFileSync(file('foreign.cow'), Buffer.concat([Buffer.from('QCOW'), Buffer.alloc(65532)]))
    expect(snapcow('info', 'foreign.cow')).toMatchObject({ code: 1, err: 'snapcow: foreign.cow: COW device has a foreign header: magic 0x574f4351 is not "SnAp" (0x70416e53)\n' })
    fs.writeFileSync(file('zero.cow'), Buffer.alloc(65536))
    expect(snapcow('status', 'base.img', 'zero.cow').err).toBe('snapcow: zero.cow: holds no snapshot store (its first 4 bytes are zero): make one with snapcow create\n')
    fs.writeFileSync(file('odd.cow'), Buffer.alloc(1000))
    const odd = snapcow('map', 'odd.cow')
    expect([odd.code, odd.err]).toEqual([1, 'snapcow: odd.cow: is 1000 bytes, not a multiple of 512: an image holds whole 512-byte sectors\n'])
    expect(odd.err).not.toMatch(/\n\s+at /)
    expect(snapcow('--debug', 'map', 'odd.cow').err).toMatch(/\n\s+at /)
    expect(snapcow('info', '.').err).toBe('snapcow: .: is a directory, not an image file\n')
  })

  it('a reader that stops early (snapcow --help | true) is no crash: no EPIPE trace, exit 0', () => {
    // `true` exits without reading; the program still writes its help into the closed pipe.
    for (let i = 0; i < 3; i++) {
      const run = spawnSync('bash', ['-c', `"$0" "$1" --help | true; exit \${PIPESTATUS[0]}`, process.execPath, BIN], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
      expect([run.status, run.stderr]).toEqual([0, ''])
    }
  })

  it('every command has --help with examples', async () => {
    const commands = ['create', 'status', 'table', 'info', 'check', 'map', 'diff', 'export', 'merge', 'serve', 'demo']
    const helps = await Promise.all(commands.map((command) => snapcowAsync([command, '--help'])))
    commands.forEach((command, i) => {
      expect(helps[i]!.code, command).toBe(0)
      expect(helps[i]!.out, command).toMatch(/Examples:\n {2}\$ snapcow /)
    })
  })
})

describe('the same errors from every command that opens an origin and a COW', () => {
  it('missing file, wrong magic, too-small COW, misaligned size: one line naming the file, exit 1, nothing written', async () => {
    fs.writeFileSync(file('e.img'), Buffer.alloc(1 << 20, 0x11))
    fs.writeFileSync(file('e-foreign.cow'), Buffer.concat([Buffer.from('QCOW'), Buffer.alloc(65532)]))
    fs.writeFileSync(file('e-odd.img'), Buffer.alloc(1000))
    fs.writeFileSync(file('e-odd.cow'), Buffer.alloc(1000))
    expect(snapcow('create', 'e.img', 'e-full.cow', '--size', '256k').code).toBe(0)
    fs.writeFileSync(file('e-tiny.cow'), fs.readFileSync(file('e-full.cow')).subarray(0, 4096)) // the header, no room for area 0
    const cases: Array<[string[], string]> = [
      [['e-none.img', 'e-full.cow'], 'e-none.img: no such file'],
      [['e.img', 'e-none.cow'], 'e-none.cow: no such file'],
      [['e.img', 'e-foreign.cow'], 'e-foreign.cow: COW device has a foreign header: magic 0x574f4351 is not "SnAp" (0x70416e53)'],
      [['e.img', 'e-tiny.cow'], 'e-tiny.cow: COW device of 4096 bytes is too small for the header and metadata area 0 (2 chunks of 4096 bytes)'],
      [['e-odd.img', 'e-full.cow'], 'e-odd.img: is 1000 bytes, not a multiple of 512: an image holds whole 512-byte sectors'],
      [['e.img', 'e-odd.cow'], 'e-odd.cow: is 1000 bytes, not a multiple of 512: an image holds whole 512-byte sectors'],
    ]
    const bytes = () => Object.fromEntries(fs.readdirSync(dir).filter((f) => f.startsWith('e')).map((f) => [f, fs.readFileSync(file(f)).toString('base64')]))
    const before = bytes()
    for (const [files, message] of cases) {
      // the three at once (one case at a time: serve takes the origin's writer lock)
      const commands = [['status', ...files], ['export', ...files, 'e-out.img'], ['serve', ...files, '--socket', file('e.sock')]]
      const runs = await Promise.all(commands.map((args) => snapcowAsync(args)))
      runs.forEach((run, i) => expect(run, commands[i]!.join(' ')).toMatchObject({ code: 1, out: '', err: `snapcow: ${message}\n` }))
    }
    expect(bytes(), 'every refused command wrote nothing').toEqual(before)
  })
})

describe('snapcow check', () => {
  const damaged = (name: string, damage: () => void): { code: number | null; out: string; err: string } => {
    fs.copyFileSync(file('base.cow'), file(name))
    damage()
    return snapcow('check', '--origin', 'base.img', name)
  }

  it('passes a sound store', () => {
    expect(snapcow('check', '--origin', 'base.img', 'base.cow')).toMatchObject({ code: 0, out: 'base.cow: sound (11 exceptions)\n' })
  })

  it('reports bad magic, a record past the device, one on a metadata chunk, duplicates and a chunk past the origin, with where', () => {
    const magic = damaged('magic.cow', () => { const fd = fs.openSync(file('magic.cow'), 'r+'); fs.writeSync(fd, Buffer.from('SnAq'), 0, 4, 0); fs.closeSync(fd) })
    expect(magic.code).toBe(1)
    expect(magic.out).toMatch(/foreign header: magic 0x71416e53[\s\S]*where: header, byte 0/)
    const past = damaged('past.cow', () => setRecord('past.cow', 3, 3, 5000))
    expect(past.code).toBe(1)
    expect(past.out).toMatch(/new_chunk 5000 lies past the end of the COW \(256 chunks\)\n {4}where: metadata area 0 \(chunk 1\), record 3\n {4}what to do: /)
    const meta = damaged('meta.cow', () => setRecord('meta.cow', 4, 4, 1))
    expect(meta.out).toMatch(/new_chunk 1 is a metadata chunk, not data\n {4}where: metadata area 0 \(chunk 1\), record 4/)
    const duplicate = damaged('dup.cow', () => setRecord('dup.cow', 5, 2, 7))
    expect(duplicate.out).toMatch(/old_chunk 2 is remapped twice \(first at metadata area 0 \(chunk 1\), record 2\)/)
    const origin = damaged('past-origin.cow', () => setRecord('past-origin.cow', 6, 999_999, 8))
    expect(origin.out).toMatch(/old_chunk 999999 lies past the origin's last chunk \(2048 chunks\)/)
    expect(origin.err).toMatch(/^snapcow: past-origin\.cow: store is damaged/)
    const two = damaged('two.cow', () => { setRecord('two.cow', 3, 3, 5000); setRecord('two.cow', 4, 4, 1) })
    expect(two.out).toMatch(/DAMAGED, 2 problem\(s\)/)
    damaged('json.cow', () => setRecord('json.cow', 3, 3, 5000))
    const json = snapcow('check', '--json', 'json.cow')
    expect(json.code).toBe(1)
    const report = JSON.parse(json.out) as { sound: boolean; problems: Array<{ what: string; where: string; fix: string }> }
    expect([report.sound, report.problems.length, report.problems[0]!.where]).toEqual([false, 1, 'metadata area 0 (chunk 1), record 3'])
  })

  it('names 64-bit chunk numbers exactly, and two past 2^53 are not one', () => {
    const huge = 2n ** 60n
    const big = damaged('huge.cow', () => { setRecord('huge.cow', 3, huge, 5000); setRecord('huge.cow', 4, huge + 1n, huge + 1n) })
    expect(big.code).toBe(1)
    expect(big.out).toMatch(/old_chunk 1152921504606846976 lies past the origin's last chunk/)
    expect(big.out).toMatch(/new_chunk 1152921504606846977 lies past the end of the COW \(256 chunks\)/)
    expect(big.out).not.toMatch(/remapped twice/)
  })
})

describe('kernel vectors', () => {
  for (const vector of kernelVectors()) {
    it(`${vector.name}: status and table print what the kernel printed, check passes`, () => {
      fs.writeFileSync(file(`${vector.name}.cow`), vector.cow())
      fs.closeSync(fs.openSync(file(`${vector.name}.img`), 'w'))
      fs.truncateSync(file(`${vector.name}.img`), vector.manifest.origin.bytes)
      const m = vector.manifest as unknown as { load: { status: string; table: string } }
      expect(snapcow('status', `${vector.name}.img`, `${vector.name}.cow`).out).toBe(`${m.load.status}\n`)
      // dmsetup prints major:minor where snapcow prints the files
      const table = snapcow('table', `${vector.name}.img`, `${vector.name}.cow`).out
      expect(table).toBe(`${m.load.table.replace('254:0', `${vector.name}.img`).replace('254:16', `${vector.name}.cow`)}\n`)
      expect(snapcow('check', '--origin', `${vector.name}.img`, `${vector.name}.cow`).code).toBe(0)
    })
  }
})

describe('status of several COWs', () => {
  it('--json gives one row per COW, each with the line the kernel printed', () => {
    const vectors = kernelVectors().filter((v) => v.name === 'cs8-basic' || v.name === 'cs8-merged')
    expect(vectors).toHaveLength(2) // both have a 16 MiB origin
    for (const v of vectors) fs.writeFileSync(file(`multi-${v.name}.cow`), v.cow())
    fs.writeFileSync(file('multi.img'), Buffer.alloc(16 << 20))
    const run = snapcow('status', '--json', 'multi.img', ...vectors.map((v) => `multi-${v.name}.cow`))
    expect(run.code).toBe(0)
    const rows = JSON.parse(run.out) as Array<{ cow: string; state: string; line: string }>
    expect(rows.map((r) => [r.cow, r.state, r.line])).toEqual(vectors.map((v) => [`multi-${v.name}.cow`, 'active', v.manifest.load.status]))
  })
})

describe('writing commands', () => {
  it('export writes the snapshot content, diff finds the ranges two snapshots disagree on, merge makes the origin read it', async () => {
    const snapshotBefore = fs.readFileSync(file('base.img'))
    snapshotBefore.fill(0x11) // the snapshot of base was taken when every byte was 0x11
    const exported = snapcow('export', 'base.img', 'base.cow', 'out.img')
    expect(exported.code).toBe(0)
    expect(fs.readFileSync(file('out.img')).equals(snapshotBefore)).toBe(true)
    expect(snapcow('export', 'base.img', 'base.cow', 'out.img')).toMatchObject({ code: 1, err: 'snapcow: out.img: exists: give --force to overwrite it\n' })

    // a second snapshot taken now, then one more origin write that only the second copies
    const originDevice = await FileDevice.open(file('base.img'))
    const cowA = await FileDevice.open(file('base.cow'))
    const cowB = await FileDevice.open(file('second.cow'), { create: true, size: 1 << 20 })
    const origin = await openOrigin(originDevice, { journal: false })
    await origin.loadSnapshot(cowA)
    await origin.createSnapshot(cowB)
    await origin.write(200 * 4096, new Uint8Array(2 * 4096).fill(0x44))
    await origin.close()
    for (const d of [cowA, cowB, originDevice]) await d.close()
    const diff = JSON.parse(snapcow('diff', '--json', 'base.img', 'base.cow', 'second.cow').out) as unknown
    // chunks 0-9 and 100: A has the old 0x11, B reads the new data; 200-201 both kept 0x11
    expect(diff).toEqual([{ offset: 0, length: 10 * 4096 }, { offset: 100 * 4096, length: 4096 }])

    const merged = snapcow('merge', 'base.img', 'base.cow')
    expect(merged.code).toBe(0)
    expect(merged.out).toMatch(/merge: 100% \(13\/13 chunks/)
    const after = fs.readFileSync(file('base.img'))
    expect(after.subarray(0, 201 * 4096).equals(snapshotBefore.subarray(0, 201 * 4096))).toBe(true)
    expect(snapcow('status', 'base.img', 'base.cow').out).toBe('0 16384 snapshot 16/2048 16\n')
  })

  it('merge stops cleanly on SIGINT (Ctrl-C) and a later run resumes and finishes', async () => {
    fs.writeFileSync(file('long.img'), Buffer.alloc(32 << 20, 0x11))
    const originDevice = await FileDevice.open(file('long.img'))
    const cowDevice = await FileDevice.open(file('long.cow'), { create: true, size: 40 << 20 })
    const origin = await openOrigin(originDevice, { journal: false })
    await origin.createSnapshot(cowDevice)
    await origin.write(0, new Uint8Array(32 << 20).fill(0x22))
    await origin.close()
    await cowDevice.close()
    await originDevice.close()
    let sent = false
    const stopped = await snapcowAsync(['merge', 'long.img', 'long.cow'], (_out, child) => { if (!sent) { sent = true; child.kill('SIGINT') } })
    expect([stopped.code, stopped.err]).toEqual([1, 'snapcow: long.cow: merge stopped by Ctrl-C; run the same command again to resume\n'])
    const left = (JSON.parse(snapcow('info', '--json', 'long.cow').out) as { exceptions: number }).exceptions
    expect(left).toBeGreaterThan(0)
    expect(left).toBeLessThan(8192)
    expect(snapcow('check', 'long.cow').code).toBe(0)
    const resumed = snapcow('merge', 'long.img', 'long.cow')
    expect(resumed.code, resumed.err).toBe(0)
    expect(resumed.out).toContain(`merge: 100% (${left}/${left} chunks`)
    expect(fs.readFileSync(file('long.img')).every((b) => b === 0x11)).toBe(true)
  })

  it('demo runs twice in one folder and verifies its result', () => {
    for (let run = 0; run < 2; run++) {
      const demo = snapcow('demo', 'demo')
      expect(demo.code, demo.err).toBe(0)
      expect(demo.out).toMatch(/snapshot reads the old data/)
      expect(demo.out).toMatch(/origin sha256 \w+… = the snapshot's/)
      expect(demo.out).toMatch(/Summary\n/)
    }
  })
})

describe('snapcow serve', () => {
  const hasQemuIo = spawnSync('sh', ['-c', 'command -v qemu-io']).status === 0
  const serveTest = hasQemuIo ? it : it.skip

  serveTest('exports the origin and the snapshot: qemu-io writes the origin, the snapshot still reads the old data; SIGINT stops it', async () => {
    await storeWithExceptions('served')
    const socket = file('served.sock')
    const qemuIo = (name: string, ...commands: string[]) => spawnSync('qemu-io',
      ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), `nbd+unix:///${name}?socket=${socket}`], { encoding: 'utf8', timeout: 30_000 })
    let checked: { write: ReturnType<typeof qemuIo>; snap: ReturnType<typeof qemuIo>; origin: ReturnType<typeof qemuIo> } | undefined
    const run = await snapcowAsync(['serve', 'served.img', 'served.cow', '--socket', socket], (out, child) => {
      if (checked !== undefined || !out.includes('serving')) return
      // chunk 50 (0x11 before) gets new data through the origin export; chunk 0 was copied before
      const write = qemuIo('origin', `write -P 0x44 ${50 * 4096} 4096`)
      const snap = qemuIo('served', `read -P 0x11 ${50 * 4096} 4096`, 'read -P 0x11 0 4096')
      const origin = qemuIo('origin', `read -P 0x44 ${50 * 4096} 4096`, 'read -P 0x22 0 4096')
      checked = { write, snap, origin }
      child.kill('SIGINT')
    })
    expect(run.code, run.err).toBe(0)
    expect(run.out).toMatch(/serving origin, served on .*served\.sock/)
    expect(run.out).toMatch(/stopped/)
    for (const [what, result] of Object.entries(checked!)) {
      expect(result.status, `${what}: ${result.stdout}${result.stderr}`).toBe(0)
      expect(result.stdout, what).not.toMatch(/Pattern verification failed/)
    }
    // After the restart the files say the same: the write went to the origin, the old data to the COW.
    expect(fs.readFileSync(file('served.img')).subarray(50 * 4096, 51 * 4096).every((b) => b === 0x44)).toBe(true)
    // 11 exceptions before, chunk 50's the 12th: header + area 0 + 12 data chunks = 14 chunks of 8 sectors
    expect(snapcow('status', 'served.img', 'served.cow').out).toMatch(/ snapshot 112\/2048 16\n/)
  })

  it('refuses a call with neither --socket nor --port (usage, exit 2)', () => {
    const run = snapcow('serve', 'missing.img')
    expect(run.code).toBe(2)
    expect(run.err).toMatch(/exactly one of --socket PATH or --port N/)
  })

  it('a missing origin is one line naming the file, exit 1', () => {
    const run = snapcow('serve', 'nothing.img', '--socket', file('x.sock'))
    expect(run.code).toBe(1)
    expect(run.err).toMatch(/^snapcow: nothing\.img: /)
  })
})
