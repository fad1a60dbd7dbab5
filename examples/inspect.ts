// examples/inspect.ts: watch snapcow's chunk machines move None → Pending →
// CompletedWithReaders → Completed in the Stately inspector.
//   npm run example:inspect              # local bridge on http://localhost:8080: open it in a browser
//   npm run example:inspect -- --console # no browser: print each chunk's states here
// The workload is slowed down (a delayed origin device) so that every state stays on screen.
import type { InspectionEvent } from 'xstate'
import { createWebSocketInspector } from '@statelyai/inspect'
import { createInspectorServer } from '@statelyai/inspect/server'
import { MemoryDevice, openOrigin } from '../index.js'
import type { BlockDevice } from '../index.js'

const toConsole = process.argv.includes('--console')
const port = Number(process.env.INSPECT_PORT ?? 8080)
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * A memory device whose requests take `ms` each (small reads, like the snapshot's below, five
 * times as long), so the machines' states can be seen.
 */
function slow(device: BlockDevice, ms: number): BlockDevice {
  return {
    get size() { return device.size },
    read: async (offset, buffer) => { await pause(buffer.length <= 512 ? 5 * ms : ms); await device.read(offset, buffer) },
    write: async (offset, data) => { await pause(ms); await device.write(offset, data) },
    flush: () => device.flush(),
    close: () => device.close(),
  }
}

let inspect: (event: InspectionEvent) => void
let stop = () => {}
if (toConsole) {
  inspect = (event) => {
    const id = (event.actorRef as { id?: string }).id ?? ''
    if (event.type === '@xstate.snapshot' && id.startsWith('snap-')) {
      const value = (event.snapshot as { value?: unknown }).value
      console.log(`${id.padEnd(10)} ${typeof value === 'string' ? value : JSON.stringify(value)}  (after ${event.event.type})`)
    }
  }
} else {
  const server = createInspectorServer({ port, autoOpen: false })
  const inspector = createWebSocketInspector({ url: `ws://localhost:${port}` })
  inspect = inspector.inspect as (event: InspectionEvent) => void
  stop = () => { inspector.stop(); server.stop() }
  console.log(`Open http://localhost:${port} in a browser (the Stately inspector), then watch.`)
  await pause(5000)
}

const origin = await openOrigin(slow(new MemoryDevice(1 << 20), 300), { inspect })
const snapshot = await origin.createSnapshot(new MemoryDevice(1 << 20), { chunkSize: 4096 })
for (const chunk of [3, 4, 5]) {
  // A snapshot read of the chunk is still at the origin when the copy commits:
  // the chunk waits in CompletedWithReaders until that read is done.
  const reading = snapshot.read(chunk * 4096, new Uint8Array(512))
  await pause(50)
  await Promise.all([origin.write(chunk * 4096, new Uint8Array(4096).fill(chunk)), reading])
  console.log(`chunk ${chunk}: ${snapshot.chunkState(chunk)}; ${snapshot.status().line}`)
}
await origin.close()
stop()
