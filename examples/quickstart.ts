// examples/quickstart.ts: snapcow's main job on files in a local folder. It makes an origin
// file, takes a snapshot of it on a COW file (Linux dm-snapshot's own format), overwrites part
// of the origin, shows that the snapshot still reads the old data, writes to the snapshot,
// and prints the `dmsetup status` line Linux would print for the same snapshot.
//   npm run example [-- folder]      (default: ./.snapcow-demo)
import { createHash } from 'node:crypto'
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { FileDevice, openOrigin, readCowStore } from '../index.js'

const folder = path.resolve(process.argv[2] ?? '.snapcow-demo')
await mkdir(folder, { recursive: true })
const originPath = path.join(folder, 'origin.img')
const cowPath = path.join(folder, 'cow.img')
await rm(cowPath, { force: true }) // a fresh COW each run (createSnapshot never overwrites a store)

const originDevice = await FileDevice.open(originPath, { create: true, size: 16 << 20 })
const cowDevice = await FileDevice.open(cowPath, { create: true, size: 4 << 20 })
const hash = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex').slice(0, 16)

// Some content on the origin before the snapshot.
const origin = await openOrigin(originDevice)
await origin.write(0, new Uint8Array(1 << 20).fill(0x41))
const before = new Uint8Array(1 << 20)
await origin.read(0, before)
console.log(`origin ${originPath}: ${origin.size} bytes, first MiB hashes to ${hash(before)}`)

const snapshot = await origin.createSnapshot(cowDevice, { chunkSize: 4096 })
console.log(`snapshot ${snapshot.id} on ${cowPath}: ${snapshot.status().line}`)

// Overwrite 64 KiB of the origin: the old chunks are copied to the COW first.
await origin.write(8192, new Uint8Array(64 << 10).fill(0x42))
const seen = new Uint8Array(1 << 20)
await snapshot.read(0, seen)
console.log(`after a 64 KiB origin write: snapshot still hashes to ${hash(seen)} (${hash(seen) === hash(before) ? 'unchanged' : 'CHANGED'})`)
console.log(`chunk 2 of the snapshot is ${snapshot.chunkState(2)}; status ${snapshot.status().line}`)

// Snapshots are writable; the origin is untouched by it.
await snapshot.write(512 << 10, new Uint8Array(4096).fill(0x43))
await origin.flush()
await snapshot.flush()
const info = await readCowStore(cowDevice)
console.log(`COW store: valid=${info.valid}, ${info.exceptions.length} exceptions, chunk ${info.chunkSectors} sectors`)
console.log(`dmsetup status would say: ${snapshot.status().line}`)

await origin.close() // drops the snapshot (its store stays valid on disk); devices stay open
await originDevice.close()
await cowDevice.close()
