// cli/demo.ts: `snapcow demo`: the main job a new user runs first (npm start). It makes an origin
// image, snapshots it, writes to both, shows the snapshot keeping the old data, the dmsetup
// lines, the change map, merges with a progress bar and verifies the result, timing each step.
import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'
import type { Command } from 'commander'
import { FileDevice, openOrigin } from '../index.js'
import { CliError, on } from './fail.js'
import { progress } from './progress.js'
import { formatBytes } from './sizes.js'
import { extentsOf, readStore, statusOf, tableOf } from './store.js'

const ORIGIN_BYTES = 64 << 20
const COW_BYTES = 16 << 20
const CHUNK = 4096
const FILES = ['origin.img', 'snapshot.cow'] as const

/** Known content: every 4 KiB block stamped with its own index, repeated. */
function known(offset: number, length: number, tag: number): Uint8Array {
  const bytes = Buffer.alloc(length)
  for (let at = 0; at < length; at += 8) {
    bytes.writeUInt32LE((offset + at) / 4096 >>> 0, at)
    bytes.writeUInt32LE(tag, at + 4)
  }
  return bytes
}

const sha = (bytes: Uint8Array): string => crypto.createHash('sha256').update(bytes).digest('hex').slice(0, 16)

export function registerDemo(program: Command): void {
  program.command('demo')
    .description('run the tour: origin, snapshot, writes, status, change map, merge, verification')
    .argument('[DIR]', 'where to put the demo files (made if missing; its demo files are replaced)', './snapcow-demo')
    .addHelpText('after', '\nExamples:\n  $ snapcow demo\n  $ npm start\n  $ snapcow demo /tmp/tour')
    .action(async (dir: string) => {
      const steps: Array<{ step: string; ms: number }> = []
      const step = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
        const started = performance.now()
        console.log(`\n== ${name}`)
        const result = await work()
        steps.push({ step: name, ms: performance.now() - started })
        return result
      }
      await on(dir, () => fs.mkdir(dir, { recursive: true }))
      const originPath = path.join(dir, FILES[0])
      const cowPath = path.join(dir, FILES[1])
      await step('start over: remove earlier demo files', async () => {
        for (const file of FILES) await on(dir, () => fs.rm(path.join(dir, file), { force: true }))
        console.log(`folder ${dir}`)
      })
      const original = known(0, ORIGIN_BYTES, 0x0a0a0a0a)
      await step(`make a ${formatBytes(ORIGIN_BYTES)} origin image with known content`, async () => {
        await on(originPath, () => fs.writeFile(originPath, original))
        console.log(`${originPath}: sha256 ${sha(original)}…`)
      })
      const originDevice = await on(originPath, () => FileDevice.open(originPath))
      const cowDevice = await on(cowPath, () => FileDevice.open(cowPath, { create: true, size: COW_BYTES }))
      try {
        const origin = await on(originPath, () => openOrigin(originDevice, { journal: false }))
        try {
          const snapshot = await step('take a persistent snapshot (the kernel\'s P format)', async () => {
            const s = await on(cowPath, () => origin.createSnapshot(cowDevice, { chunkSize: CHUNK }))
            console.log(`${cowPath}: ${formatBytes(COW_BYTES)} COW, chunk ${CHUNK} bytes`)
            return s
          })
          // Origin writes: 4 MiB at 8 MiB, 1 MiB at 40 MiB; snapshot write: 256 KiB at 20 MiB.
          const originWrites = [[8 << 20, 4 << 20], [40 << 20, 1 << 20]] as const
          const snapshotWrite = [20 << 20, 256 << 10] as const
          await step('write 5 MiB to the origin (the old data is copied to the COW first)', async () => {
            for (const [offset, length] of originWrites) await on(originPath, () => origin.write(offset, known(offset, length, 0x0b0b0b0b)))
            console.log(`origin writes: ${originWrites.map(([o, l]) => `${formatBytes(l)} at ${formatBytes(o)}`).join(', ')}`)
          })
          await step('write 256 KiB to the snapshot (the origin is untouched)', async () => {
            await on(cowPath, () => snapshot.write(snapshotWrite[0], known(snapshotWrite[0], snapshotWrite[1], 0x0c0c0c0c)))
          })
          const expected = Buffer.from(original)
          Buffer.from(known(snapshotWrite[0], snapshotWrite[1], 0x0c0c0c0c)).copy(expected, snapshotWrite[0])
          await step('check: the snapshot still reads the old data, the origin the new', async () => {
            const seen = new Uint8Array(ORIGIN_BYTES)
            await snapshot.read(0, seen)
            if (Buffer.compare(seen, expected) !== 0) throw new CliError(cowPath, 'demo failed: the snapshot does not read what it should')
            await origin.read(0, seen)
            const newOrigin = Buffer.from(original)
            for (const [offset, length] of originWrites) Buffer.from(known(offset, length, 0x0b0b0b0b)).copy(newOrigin, offset)
            if (Buffer.compare(seen, newOrigin) !== 0) throw new CliError(originPath, 'demo failed: the origin does not read what was written')
            console.log(`snapshot reads the old data (sha256 ${sha(expected)}…), origin the new (sha256 ${sha(newOrigin)}…)`)
          })
          await step('status and table lines (as dmsetup prints them)', async () => {
            await snapshot.flush()
            const store = await readStore(cowPath)
            console.log(`status: ${snapshot.status().line}`)
            console.log(`        ${statusOf(ORIGIN_BYTES, store).line}   (from the file: snapcow status)`)
            console.log(`table:  ${tableOf(originPath, ORIGIN_BYTES, store)}`)
          })
          await step('change map (snapcow map)', async () => {
            const { info } = await readStore(cowPath)
            const extents = extentsOf(info.exceptions)
            for (const e of extents.slice(0, 6)) {
              console.log(`origin ${formatBytes(e.originChunk * CHUNK)} +${formatBytes(e.chunks * CHUNK)} -> COW chunk ${e.cowChunk}`)
            }
            if (extents.length > 6) console.log(`… ${extents.length - 6} more`)
            console.log(`${info.exceptions.length} chunks remapped in ${extents.length} extents`)
          })
          await step('merge the snapshot back into the origin', async () => {
            let bar: ReturnType<typeof progress> | undefined
            await snapshot.merge({ onProgress: ({ merged, total }) => { bar ??= progress('merge', total, 'chunks'); bar.update(merged) } })
            bar?.stop()
            console.log(`status: ${snapshot.status().line} (${snapshot.status().state})`)
          })
          await step('verify: the origin now reads what the snapshot read', async () => {
            const seen = new Uint8Array(ORIGIN_BYTES)
            await origin.read(0, seen)
            if (Buffer.compare(seen, expected) !== 0) throw new CliError(originPath, 'demo failed: after the merge the origin differs from the snapshot')
            console.log(`origin sha256 ${sha(seen)}… = the snapshot's`)
          })
        } finally {
          await origin.close()
        }
      } finally {
        await cowDevice.close()
        await originDevice.close()
      }
      console.log('\nSummary')
      for (const { step: name, ms } of steps) console.log(`  ${ms.toFixed(0).padStart(6)} ms  ${name}`)
      console.log(`  ${steps.reduce((sum, s) => sum + s.ms, 0).toFixed(0).padStart(6)} ms  total; files in ${dir}`)
    })
}
