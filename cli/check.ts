// cli/check.ts: `snapcow check`: validates a persistent store record by record and reports every
// problem it finds (what, where, what to do), then cross-checks with readCowStore, so a store
// that check passes is one loadSnapshot accepts.
import type { Command } from 'commander'
import { asChunkSectors, cowGeometry, CowFormatError, isLegalChunkSectors, readCowStore, SECTOR_BYTES } from '../index.js'
import type { BlockDevice } from '../index.js'
import { CliError } from './fail.js'
import { openReadOnly, withReadOnly } from './store.js'

const MAGIC = 0x70416e53 // "SnAp" little-endian
const MAX_PROBLEMS = 50

interface Problem { what: string; where: string; fix: string }

async function scan(cow: BlockDevice, originBytes: number | undefined): Promise<{ problems: Problem[]; notes: string[] }> {
  const problems: Problem[] = []
  const notes: string[] = []
  if (cow.size < SECTOR_BYTES) { // an empty file: there is no header sector to read
    return { problems: [{ what: `the device (${cow.size} bytes) is too small to hold a snapshot header`, where: 'header, byte 0', fix: 'the file was truncated: restore it' }], notes }
  }
  const header = new Uint8Array(SECTOR_BYTES)
  await cow.read(0, header)
  const view = new DataView(header.buffer)
  const magic = view.getUint32(0, true)
  const valid = view.getUint32(4, true)
  const version = view.getUint32(8, true)
  const chunkSectors = view.getUint32(12, true)
  const recreate = 'the store cannot be repaired in place: recreate the snapshot (snapcow create --force)'
  if (magic === 0) return { problems: [{ what: 'no snapshot store (magic is 0)', where: 'header, byte 0', fix: 'create one with snapcow create' }], notes }
  if (magic !== MAGIC) {
    return { problems: [{ what: `foreign header: magic 0x${magic.toString(16).padStart(8, '0')} is not "SnAp" (0x70416e53)`, where: 'header, byte 0', fix: 'is this the right file? a COW image starts with "SnAp"' }], notes }
  }
  if (version !== 1) problems.push({ what: `version ${version} is not 1`, where: 'header, byte 8', fix: recreate })
  if (valid !== 0 && valid !== 1) problems.push({ what: `valid flag ${valid} is neither 0 nor 1`, where: 'header, byte 4', fix: recreate })
  if (!isLegalChunkSectors(chunkSectors)) {
    problems.push({ what: `chunk_size ${chunkSectors} sectors is not a power of two from 1 to 2^21`, where: 'header, byte 12', fix: recreate })
    return { problems, notes }
  }
  if (valid === 0) notes.push('the header says the snapshot is Invalid (its COW filled up or an I/O failed): it cannot be read or merged; drop it')
  const g = cowGeometry(asChunkSectors(chunkSectors))
  const deviceChunks = Math.floor(cow.size / g.chunkBytes)
  const originChunks = originBytes === undefined ? undefined : Math.ceil(originBytes / g.chunkBytes)
  // Chunk numbers are 64-bit on disk: kept as bigint, so a damaged record past 2^53 is named
  // exactly and two such records never look like one.
  const seenOld = new Map<bigint, string>()
  const seenNew = new Map<bigint, string>()
  const area = new Uint8Array(g.chunkBytes)
  const records = new DataView(area.buffer)
  for (let index = 0; problems.length < MAX_PROBLEMS; index++) {
    const location = g.areaLocation(index)
    if (location + 1 > deviceChunks) {
      problems.push({
        what: index === 0 ? `the device (${cow.size} bytes) ends before metadata area 0` : `the device ends before metadata area ${index}, which the full area ${index - 1} says must follow`,
        where: `chunk ${location} (byte ${location * g.chunkBytes})`,
        fix: index === 0 ? 'the file was truncated: restore it' : 'the file was truncated or the table lost its end: restore the file, or recreate the snapshot',
      })
      break
    }
    await cow.read(location * g.chunkBytes, area)
    let slot = 0
    for (; slot < g.exceptionsPerArea && problems.length < MAX_PROBLEMS; slot++) {
      const oldChunk = records.getBigUint64(slot * 16, true)
      const newChunk = records.getBigUint64(slot * 16 + 8, true)
      if (newChunk === 0n) break
      const where = `metadata area ${index} (chunk ${location}), record ${slot}`
      if (newChunk < BigInt(deviceChunks) && g.isMetadataChunk(Number(newChunk))) problems.push({ what: `new_chunk ${newChunk} is a metadata chunk, not data`, where, fix: recreate })
      else if (newChunk >= BigInt(deviceChunks)) problems.push({ what: `new_chunk ${newChunk} lies past the end of the COW (${deviceChunks} chunks)`, where, fix: 'the COW file was truncated, or the record is damaged: restore the file or recreate the snapshot' })
      if (originChunks !== undefined && oldChunk >= BigInt(originChunks)) {
        problems.push({ what: `old_chunk ${oldChunk} lies past the origin's last chunk (${originChunks} chunks)`, where, fix: 'is this the right origin? the store was made for a bigger one' })
      }
      const earlierOld = seenOld.get(oldChunk)
      if (earlierOld !== undefined) problems.push({ what: `old_chunk ${oldChunk} is remapped twice (first at ${earlierOld})`, where, fix: recreate })
      const earlierNew = seenNew.get(newChunk)
      if (earlierNew !== undefined) problems.push({ what: `new_chunk ${newChunk} is used twice (first at ${earlierNew})`, where, fix: recreate })
      seenOld.set(oldChunk, where)
      seenNew.set(newChunk, where)
    }
    if (slot < g.exceptionsPerArea) break
  }
  return { problems, notes }
}

export function registerCheck(program: Command): void {
  program.command('check')
    .description('validate the persistent store on COW: exit 0 when sound, 1 when damaged, with what, where and what to do')
    .argument('<COW>', 'a COW image holding a persistent store')
    .option('--origin <ORIGIN>', 'also check that every remapped chunk lies inside this origin')
    .option('--json', 'print JSON instead')
    .addHelpText('after', '\nExamples:\n  $ snapcow check snap.cow\n  snap.cow: sound (1234 exceptions in 1 area)\n  $ snapcow check --origin origin.img --json snap.cow')
    .action(async (path: string, options: { origin?: string; json?: boolean }) => {
      let originBytes: number | undefined
      if (options.origin !== undefined) {
        const origin = await openReadOnly(options.origin)
        originBytes = origin.size
        await origin.close()
      }
      const result = await withReadOnly(path, async (cow) => {
        const found = await scan(cow, originBytes)
        let exceptions: number | undefined
        if (found.problems.length === 0) {
          try {
            exceptions = (await readCowStore(cow, { scanInvalid: true, ...(originBytes === undefined ? {} : { originSize: originBytes }) })).exceptions.length
          } catch (error) {
            if (!(error instanceof CowFormatError)) throw error
            const where = error.area === undefined ? `field ${error.field}` : `metadata area ${error.area}${error.slot === undefined ? '' : `, record ${error.slot}`}`
            found.problems.push({ what: error.message, where, fix: 'restore the file or recreate the snapshot' })
          }
        }
        return { ...found, exceptions }
      })
      const sound = result.problems.length === 0
      if (options.json === true) {
        console.log(JSON.stringify({ cow: path, sound, exceptions: result.exceptions, problems: result.problems, notes: result.notes }, null, 2))
      } else if (sound) {
        console.log(`${path}: sound (${result.exceptions ?? 0} exceptions)`)
        for (const note of result.notes) console.log(`  note: ${note}`)
      } else {
        console.log(`${path}: DAMAGED, ${result.problems.length}${result.problems.length >= MAX_PROBLEMS ? '+' : ''} problem(s):`)
        for (const p of result.problems) console.log(`  - ${p.what}\n    where: ${p.where}\n    what to do: ${p.fix}`)
        for (const note of result.notes) console.log(`  note: ${note}`)
      }
      if (!sound) throw new CliError(path, `store is damaged (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}: ${result.problems[0]!.what})`, 1)
    })
}
