// cli/info.ts: `snapcow info`: what a persistent store holds (readCowStore) and how full it is.
import type { Command } from 'commander'
import { cowGeometry, asChunkSectors, SECTOR_BYTES } from '../index.js'
import { formatBytes } from './sizes.js'
import { readStore } from './store.js'

export function registerInfo(program: Command): void {
  program.command('info')
    .description('describe the persistent store on COW: header, chunk size, areas, exceptions, fill level')
    .argument('<COW>', 'a COW image holding a persistent store')
    .option('--json', 'print JSON instead')
    .addHelpText('after', '\nExamples:\n  $ snapcow info snap.cow\n  $ snapcow info --json snap.cow | jq .fillPercent')
    .action(async (cow: string, options: { json?: boolean }) => {
      const { bytes, info } = await readStore(cow, { scanInvalid: true })
      const g = cowGeometry(asChunkSectors(info.chunkSectors))
      const totalChunks = Math.floor(bytes / g.chunkBytes)
      const fillPercent = totalChunks === 0 ? 100 : Math.round((info.nextFreeChunk / totalChunks) * 1000) / 10
      const report = {
        cow, bytes, valid: info.valid, version: info.version,
        chunkSectors: info.chunkSectors, chunkBytes: info.chunkSectors * SECTOR_BYTES,
        metadataAreas: info.metadataAreas, exceptionsPerArea: g.exceptionsPerArea,
        exceptions: info.exceptions.length, nextFreeChunk: info.nextFreeChunk, totalChunks, fillPercent,
      }
      if (options.json === true) { console.log(JSON.stringify(report, null, 2)); return }
      console.log(`${cow}: persistent snapshot store ("SnAp", version ${info.version})`)
      console.log(`  valid:       ${info.valid ? 'yes' : 'no (Invalid: the snapshot cannot be read; the table below is what it held)'}`)
      console.log(`  chunk size:  ${report.chunkBytes} bytes (${info.chunkSectors} sectors)`)
      console.log(`  device:      ${formatBytes(bytes)} = ${totalChunks} chunks`)
      console.log(`  areas:       ${info.metadataAreas} metadata area(s) in use, ${g.exceptionsPerArea} exceptions each`)
      console.log(`  exceptions:  ${info.exceptions.length} chunk(s) remapped (${formatBytes(info.exceptions.length * g.chunkBytes)})`)
      console.log(`  fill level:  ${fillPercent}% (next free chunk ${info.nextFreeChunk} of ${totalChunks})`)
    })
}
