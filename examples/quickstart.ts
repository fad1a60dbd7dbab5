// examples/quickstart.ts: what snapcow can do today, on files in a local folder.
// It makes an origin file and a COW file, writes a kernel-format snapshot store by hand
// (the engine that does this for every origin write is still to come), reads it back with
// readCowStore and prints the `dmsetup status` line Linux would print for the same store.
//   npm run example [folder]      (default: ./.snapcow-demo)
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { asChunkSectors, asOldChunk, FileDevice, PersistentStore, readCowStore } from '../index.js'

const folder = path.resolve(process.argv[2] ?? '.snapcow-demo')
await mkdir(folder, { recursive: true })
const chunkSectors = asChunkSectors(8) // 4 KiB chunks
const chunkBytes = chunkSectors * 512

const origin = await FileDevice.open(path.join(folder, 'origin.img'), { create: true, size: 16 << 20 })
const cow = await FileDevice.open(path.join(folder, 'cow.img'), { create: true, size: 1 << 20 })
console.log(`origin ${origin.path}: ${origin.size} bytes; COW ${cow.path}: ${cow.size} bytes`)

// Fill two origin chunks, then "snapshot" them: copy each to a COW chunk and commit the record.
const block = new Uint8Array(chunkBytes)
for (const oldChunk of [5, 6]) {
  block.fill(oldChunk)
  await origin.write(oldChunk * chunkBytes, block)
}
await origin.flush()
const store = await PersistentStore.create(cow, chunkSectors)
for (const oldChunk of [5, 6]) {
  const newChunk = store.allocate()
  if (newChunk === undefined) throw new Error('the COW device is full')
  await origin.read(oldChunk * chunkBytes, block)
  await cow.write(newChunk * chunkBytes, block)
  const ok = await store.commit(asOldChunk(oldChunk), newChunk, true)
  console.log(`origin chunk ${oldChunk} -> COW chunk ${newChunk}: ${ok ? 'committed' : 'FAILED'}`)
}

// Read it back as Linux would load it.
const info = await readCowStore(cow)
const back = new Uint8Array(chunkBytes)
await cow.read(info.exceptions[0]![1] * chunkBytes, back)
const u = store.usage()
console.log(`store: valid=${info.valid} version=${info.version} chunk=${info.chunkSectors} sectors, ` +
  `exceptions ${JSON.stringify(info.exceptions)}, next free chunk ${info.nextFreeChunk}`)
console.log(`first COW data chunk holds byte ${back[0]} (origin chunk ${info.exceptions[0]![0]}'s data)`)
console.log(`dmsetup status would say: 0 ${origin.size / 512} snapshot ${u.allocatedSectors}/${u.totalSectors} ${u.metadataSectors}`)
await origin.close()
await cow.close()
