// cli/merge.ts: `snapcow merge`: merges a snapshot back into its origin with progress; Ctrl-C
// aborts through the merge's AbortSignal, leaving a store that a later run resumes.
import type { Command } from 'commander'
import { openOrigin } from '../index.js'
import { CliError, on } from './fail.js'
import { progress } from './progress.js'
import { openWritable } from './store.js'

export function registerMerge(program: Command): void {
  program.command('merge')
    .description('merge the snapshot on COW back into ORIGIN (the origin then reads what the snapshot read)')
    .argument('<ORIGIN>', 'the origin image')
    .argument('<COW>', 'the COW image holding the snapshot')
    .addHelpText('after', '\nCtrl-C stops the merge cleanly; run the same command again to resume.\n\nExamples:\n  $ snapcow merge origin.img snap.cow')
    .action(async (originPath: string, cowPath: string) => {
      const originDevice = await openWritable(originPath)
      const cowDevice = await openWritable(cowPath).catch(async (error: unknown) => { await originDevice.close(); throw error })
      const stop = new AbortController()
      const onSigint = (): void => stop.abort()
      process.on('SIGINT', onSigint)
      try {
        const origin = await on(originPath, () => openOrigin(originDevice, { journal: false }))
        try {
          const snapshot = await on(cowPath, () => origin.loadSnapshot(cowDevice))
          let bar: ReturnType<typeof progress> | undefined
          await on(cowPath, () => snapshot.merge({
            signal: stop.signal,
            onProgress: ({ merged, total }) => { bar ??= progress('merge', total, 'chunks'); bar.update(merged) },
          })).finally(() => bar?.stop())
          if (bar === undefined) console.log(`${cowPath}: nothing to merge`)
          console.log(`${cowPath}: merged into ${originPath}; status: ${snapshot.status().line}`)
        } finally {
          await origin.close()
        }
      } catch (error) {
        if (stop.signal.aborted) throw new CliError(cowPath, 'merge stopped by Ctrl-C; run the same command again to resume', 1, { cause: error })
        throw error
      } finally {
        process.off('SIGINT', onSigint)
        await cowDevice.close()
        await originDevice.close()
      }
    })
}
