// cli/diff.ts: `snapcow diff`: the origin ranges whose content differs between two snapshots of
// one origin. Only chunks where either snapshot has an exception can differ; those are read
// through both snapshots and compared.
import type { Command } from 'commander'
import { openOrigin, SECTOR_BYTES } from '../index.js'
import { on } from './fail.js'
import { openReadOnly, readStore } from './store.js'

export function registerDiff(program: Command): void {
  program.command('diff')
    .description('list the origin ranges whose content differs between two snapshots of ORIGIN')
    .argument('<ORIGIN>', 'the origin image')
    .argument('<COW_A>', 'the first snapshot')
    .argument('<COW_B>', 'the second snapshot')
    .option('--json', 'print JSON instead')
    .addHelpText('after', '\nExamples:\n  $ snapcow diff origin.img monday.cow tuesday.cow\n  0x0000010000-0x0000017fff (32 KiB)')
    .action(async (originPath: string, cowA: string, cowB: string, options: { json?: boolean }) => {
      const originDevice = await openReadOnly(originPath)
      const devices = [originDevice]
      try {
        const [a, b] = [await readStore(cowA, { originSize: originDevice.size }), await readStore(cowB, { originSize: originDevice.size })]
        const unit = Math.min(a.info.chunkSectors, b.info.chunkSectors) * SECTOR_BYTES
        const candidates = new Set<number>()
        for (const store of [a, b]) {
          const chunkBytes = store.info.chunkSectors * SECTOR_BYTES
          for (const [oldChunk] of store.info.exceptions) {
            for (let o = oldChunk * chunkBytes; o < Math.min((oldChunk + 1) * chunkBytes, originDevice.size); o += unit) candidates.add(o / unit)
          }
        }
        const origin = await on(originPath, () => openOrigin(originDevice, { journal: false }))
        const ranges: Array<{ offset: number; length: number }> = []
        try {
          const snapA = await on(cowA, async () => origin.loadSnapshot(devices[devices.push(await openReadOnly(cowA)) - 1]!))
          const snapB = await on(cowB, async () => origin.loadSnapshot(devices[devices.push(await openReadOnly(cowB)) - 1]!))
          const bufA = new Uint8Array(unit)
          const bufB = new Uint8Array(unit)
          for (const block of [...candidates].sort((x, y) => x - y)) {
            const offset = block * unit
            const piece = Math.min(unit, originDevice.size - offset)
            await on(cowA, () => snapA.read(offset, bufA.subarray(0, piece)))
            await on(cowB, () => snapB.read(offset, bufB.subarray(0, piece)))
            if (Buffer.compare(bufA.subarray(0, piece), bufB.subarray(0, piece)) === 0) continue
            const last = ranges.at(-1)
            if (last !== undefined && last.offset + last.length === offset) last.length += piece
            else ranges.push({ offset, length: piece })
          }
        } finally {
          await origin.close()
        }
        if (options.json === true) { console.log(JSON.stringify(ranges, null, 2)); return }
        const hex = (n: number): string => '0x' + n.toString(16).padStart(10, '0')
        for (const r of ranges) console.log(`${hex(r.offset)}-${hex(r.offset + r.length - 1)} (${r.length} bytes)`)
        console.log(`${ranges.reduce((sum, r) => sum + r.length, 0)} bytes differ in ${ranges.length} range(s)`)
      } finally {
        for (const device of devices) await device.close()
      }
    })
}
