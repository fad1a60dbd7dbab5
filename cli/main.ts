// cli/main.ts: the `snapcow` program: the commander set-up, one file per command beside it,
// and the error policy (one line `snapcow: <file>: <problem>`, exit 2 usage, 1 failure).
import { Command, CommanderError } from 'commander'
import { registerCheck } from './check.js'
import { registerCreate } from './create.js'
import { registerDemo } from './demo.js'
import { registerDiff } from './diff.js'
import { registerExport } from './export.js'
import { CliError } from './fail.js'
import { registerInfo } from './info.js'
import { registerMap } from './map.js'
import { registerMerge } from './merge.js'
import { registerServe } from './serve.js'
import { registerStatus } from './status.js'

const program = new Command('snapcow')
  .description('copy-on-write block snapshots of image files, in Linux dm-snapshot\'s format')
  .option('--debug', 'print stack traces of errors')
  .showHelpAfterError('(add --help for usage)')
  .exitOverride()
  .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'snapcow: ')) })
  .addHelpText('after', '\nExamples:\n  $ snapcow demo\n  $ snapcow create origin.img snap.cow --size 16M\n  $ snapcow status origin.img snap.cow\n  $ snapcow merge origin.img snap.cow\n  $ snapcow serve origin.img snap.cow --socket /tmp/snapcow.sock')
registerCreate(program)
registerStatus(program)
registerInfo(program)
registerCheck(program)
registerMap(program)
registerDiff(program)
registerExport(program)
registerMerge(program)
registerServe(program)
registerDemo(program)
for (const command of program.commands) command.exitOverride().showHelpAfterError(`(add --help for usage)`).configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'snapcow: ')) })

// A reader that goes away early (`snapcow map x.cow | head`) is no error: output stops, the work
// goes on to its real exit code (a merge is not cut short by its progress display).
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error
})

try {
  await program.parseAsync(process.argv)
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : 2 // commander has already printed the message
  } else {
    const debug = process.argv.includes('--debug')
    const cli = error instanceof CliError ? error : undefined
    const message = cli === undefined ? (error instanceof Error ? error.message : String(error)) : cli.message
    process.stderr.write(`snapcow: ${cli?.file === undefined ? '' : `${cli.file}: `}${message}\n`)
    if (debug) process.stderr.write(`${(cli?.cause instanceof Error ? cli.cause : error instanceof Error ? error : new Error(String(error))).stack ?? ''}\n`)
    process.exitCode = cli?.exitCode ?? 1
  }
}
