// cli/export.ts: `snapcow export`: the snapshot's content as a flat image. It writes a temporary
// file beside OUT and renames it at the end, so OUT is never left half written.
import fs from 'node:fs/promises'
import type { Command } from 'commander'
import { openOrigin } from '../index.js'
import { CliError, on } from './fail.js'
import { progress } from './progress.js'
import { openReadOnly } from './store.js'

const STEP = 1 << 20

export function registerExport(program: Command): void {
  program.command('export')
    .description("write the snapshot's content (what it reads) to OUT as a flat image")
    .argument('<ORIGIN>', 'the origin image')
    .argument('<COW>', 'the COW image holding the snapshot')
    .argument('<OUT>', 'the image file to write')
    .option('--force', 'overwrite OUT if it exists')
    .addHelpText('after', '\nExamples:\n  $ snapcow export origin.img snap.cow snapshot.img')
    .action(async (originPath: string, cowPath: string, out: string, options: { force?: boolean }) => {
      if (options.force !== true && await fs.stat(out).then(() => true, () => false)) throw new CliError(out, 'exists: give --force to overwrite it')
      const originDevice = await openReadOnly(originPath)
      const cowDevice = await openReadOnly(cowPath).catch(async (error: unknown) => { await originDevice.close(); throw error })
      const temporary = `${out}.snapcow-${process.pid}.tmp`
      try {
        const origin = await on(originPath, () => openOrigin(originDevice, { journal: false }))
        try {
          const snapshot = await on(cowPath, () => origin.loadSnapshot(cowDevice))
          const file = await on(out, () => fs.open(temporary, 'wx'))
          try {
            const bar = progress('export', Math.ceil(snapshot.size / STEP), 'MiB')
            const buffer = new Uint8Array(STEP)
            for (let offset = 0; offset < snapshot.size; offset += STEP) {
              const piece = buffer.subarray(0, Math.min(STEP, snapshot.size - offset))
              await on(cowPath, () => snapshot.read(offset, piece))
              await on(out, () => file.write(piece, 0, piece.length, offset))
              bar.update(offset / STEP + 1)
            }
            bar.stop()
            await on(out, () => file.sync())
          } finally {
            await file.close()
          }
          await on(out, () => fs.rename(temporary, out))
          console.log(`${out}: ${snapshot.size} bytes, the content of the snapshot on ${cowPath}`)
        } finally {
          await origin.close()
        }
      } finally {
        await fs.rm(temporary, { force: true })
        await cowDevice.close()
        await originDevice.close()
      }
    })
}
