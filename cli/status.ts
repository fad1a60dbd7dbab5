// cli/status.ts: `snapcow status` and `snapcow table`: the lines dmsetup prints for the same
// snapshot targets, computed from the files, opened read-only.
import type { Command } from 'commander'
import { openReadOnly, readStore, statusOf, tableOf } from './store.js'

async function originBytes(path: string): Promise<number> {
  const origin = await openReadOnly(path)
  const bytes = origin.size
  await origin.close()
  return bytes
}

export function registerStatus(program: Command): void {
  program.command('status')
    .description('print the line `dmsetup status` prints for each snapshot of ORIGIN stored on COW')
    .argument('<ORIGIN>', 'the origin image')
    .argument('<COW...>', 'one or more COW images holding persistent stores')
    .option('--json', 'print JSON instead')
    .addHelpText('after', '\nExamples:\n  $ snapcow status origin.img snap.cow\n  0 131072 snapshot 16/32768 16\n  $ snapcow status --json origin.img a.cow b.cow')
    .action(async (origin: string, cows: string[], options: { json?: boolean }) => {
      const bytes = await originBytes(origin)
      const rows = []
      for (const cow of cows) rows.push({ cow, ...statusOf(bytes, await readStore(cow)) })
      if (options.json === true) console.log(JSON.stringify(rows, null, 2))
      else for (const row of rows) console.log(row.line)
    })

  program.command('table')
    .description('print the line `dmsetup table` prints for each snapshot (file paths where dmsetup prints major:minor)')
    .argument('<ORIGIN>', 'the origin image')
    .argument('<COW...>', 'one or more COW images holding persistent stores')
    .option('--overflow', "the store is used as the kernel's PO store (not recorded on disk)")
    .addHelpText('after', '\nExamples:\n  $ snapcow table origin.img snap.cow\n  0 131072 snapshot origin.img snap.cow P 8')
    .action(async (origin: string, cows: string[], options: { overflow?: boolean }) => {
      const bytes = await originBytes(origin)
      for (const cow of cows) console.log(tableOf(origin, bytes, await readStore(cow), options.overflow === true))
    })
}
