// cli/map.ts: `snapcow map`: the remapped chunks as extents, origin range → COW range.
import type { Command } from 'commander'
import { SECTOR_BYTES } from '../index.js'
import { formatBytes } from './sizes.js'
import { extentsOf, readStore } from './store.js'

export function registerMap(program: Command): void {
  program.command('map')
    .description('list the chunks the store on COW remaps, as extents (origin range -> COW range)')
    .argument('<COW>', 'a COW image holding a persistent store')
    .option('--json', 'print JSON instead (offsets and lengths in bytes)')
    .addHelpText('after', '\nExamples:\n  $ snapcow map snap.cow\n  origin 0x0000000000-0x0000003fff -> cow 0x0000002000-0x0000005fff (4 chunks, 16 KiB)\n  $ snapcow map --json snap.cow')
    .action(async (cow: string, options: { json?: boolean }) => {
      const { info } = await readStore(cow, { scanInvalid: true })
      const chunkBytes = info.chunkSectors * SECTOR_BYTES
      const extents = extentsOf(info.exceptions).map((e) => ({
        ...e, originOffset: e.originChunk * chunkBytes, cowOffset: e.cowChunk * chunkBytes, length: e.chunks * chunkBytes,
      }))
      if (options.json === true) { console.log(JSON.stringify({ cow, chunkBytes, extents }, null, 2)); return }
      const hex = (n: number): string => '0x' + n.toString(16).padStart(10, '0')
      for (const e of extents) {
        console.log(`origin ${hex(e.originOffset)}-${hex(e.originOffset + e.length - 1)} -> cow ${hex(e.cowOffset)}-${hex(e.cowOffset + e.length - 1)} ` +
          `(${e.chunks} chunk${e.chunks === 1 ? '' : 's'}, ${formatBytes(e.length)})`)
      }
      console.log(`${info.exceptions.length} chunk(s) of ${chunkBytes} bytes in ${extents.length} extent(s)`)
    })
}
