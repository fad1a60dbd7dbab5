// cli/create.ts: `snapcow create`: a new persistent store on COW. Every check runs before the
// first write, so a refused command leaves COW exactly as it was.
import fs from 'node:fs/promises'
import type { Command } from 'commander'
import { asChunkSectors, FileDevice, isLegalChunkSectors, openOrigin, readCowStore, SECTOR_BYTES } from '../index.js'
import { CliError, on, usage } from './fail.js'
import { formatBytes, parseSize } from './sizes.js'
import { openWritable } from './store.js'

interface CreateOptions { chunkSize: string; transient?: boolean; overflow?: boolean; force?: boolean; size?: string }

async function exists(path: string): Promise<boolean> {
  return fs.stat(path).then(() => true, (error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return false
    throw error
  })
}

export function registerCreate(program: Command): void {
  program.command('create')
    .description('make a new persistent snapshot store of ORIGIN on COW (the kernel\'s P or PO format)')
    .argument('<ORIGIN>', 'the origin image')
    .argument('<COW>', 'the COW image that will hold the store')
    .option('--chunk-size <SIZE>', 'chunk size, a power of two from 512 bytes to 1G', '4k')
    .option('--transient', 'a transient (N) store: refused, see below')
    .option('--overflow', "note that the store will be used as PO; the on-disk format is the same as P")
    .option('--force', 'overwrite a store already on COW')
    .option('--size <SIZE>', 'create COW with this size when it does not exist')
    .addHelpText('after', [
      '',
      'A transient store keeps its exception table in the memory of the program using it: a',
      'command that exits cannot make one. Use the library (createSnapshot(cow, { persistent: false })).',
      'The COW needs at least 3 chunks: the header, metadata area 0, one data chunk.',
      '',
      'Examples:',
      '  $ snapcow create origin.img snap.cow --size 16M',
      '  $ snapcow create origin.img snap.cow --chunk-size 16k --force',
    ].join('\n'))
    .action(async (originPath: string, cowPath: string, options: CreateOptions) => {
      if (options.transient === true) {
        throw usage(cowPath, 'a transient store lives only in the memory of the program that made it, and snapcow create exits: ' +
          'make a persistent store (drop --transient) or use the library (createSnapshot(cow, { persistent: false }))')
      }
      const chunkBytes = parseSize(options.chunkSize, '--chunk-size')
      if (chunkBytes % SECTOR_BYTES !== 0 || !isLegalChunkSectors(chunkBytes / SECTOR_BYTES)) {
        throw usage(undefined, `--chunk-size ${options.chunkSize} (${chunkBytes} bytes) is not a power of two from 512 bytes to 1 GiB`)
      }
      const minimum = 3 * chunkBytes
      const size = options.size === undefined ? undefined : parseSize(options.size, '--size')
      if (size !== undefined && size % SECTOR_BYTES !== 0) throw usage(cowPath, `--size ${options.size} is not a multiple of 512 bytes`)
      const cowExists = await on(cowPath, () => exists(cowPath))
      if (!cowExists && size === undefined) throw new CliError(cowPath, 'no such file (give --size to create it)')
      if (!cowExists && size !== undefined && size < minimum) {
        throw usage(cowPath, `--size ${formatBytes(size)} is too small: a store of ${chunkBytes}-byte chunks needs at least ${minimum} bytes (${formatBytes(minimum)})`)
      }
      const origin = await openWritable(originPath)
      let cow: FileDevice | undefined
      let created = false
      try {
        if (cowExists) {
          cow = await openWritable(cowPath)
        } else {
          cow = await on(cowPath, () => FileDevice.open(cowPath, { create: true, size: size! }))
          created = true
        }
        const device = cow
        if (device.size < minimum) {
          throw new CliError(cowPath, `too small: ${device.size} bytes, a store of ${chunkBytes}-byte chunks needs at least ${minimum} bytes (${formatBytes(minimum)})`)
        }
        if (device === origin || (await fs.realpath(cowPath)) === (await fs.realpath(originPath))) throw usage(cowPath, 'COW and ORIGIN are the same file')
        const first = new Uint8Array(SECTOR_BYTES)
        await on(cowPath, () => device.read(0, first))
        const holdsStore = first[0] === 0x53 && first[1] === 0x6e && first[2] === 0x41 && first[3] === 0x70
        if (holdsStore && options.force !== true) {
          throw new CliError(cowPath, 'already holds a snapshot store: give --force to overwrite it (its snapshot is lost)')
        }
        if (holdsStore) await on(cowPath, async () => { await device.write(0, new Uint8Array(SECTOR_BYTES)); await device.flush() })
        const volume = await on(originPath, () => openOrigin(origin, { journal: false }))
        try {
          await on(cowPath, () => volume.createSnapshot(device, { chunkSize: chunkBytes, overflow: options.overflow === true }))
        } finally {
          await volume.close()
        }
        const info = await on(cowPath, () => readCowStore(device))
        console.log(`${cowPath}: persistent store created for ${originPath} (chunk size ${chunkBytes} bytes = ${asChunkSectors(info.chunkSectors)} sectors, ` +
          `room for ${Math.floor(device.size / chunkBytes) - 2} chunks less metadata)`)
      } catch (error) {
        // a COW file this command made is removed again: a refused command leaves nothing behind
        if (created) await cow?.close().catch(() => undefined).then(() => fs.rm(cowPath, { force: true }))
        throw error
      } finally {
        await cow?.close().catch(() => undefined)
        await origin.close()
      }
    })
}
