// test/testing/fault-device.test.ts: snapcow/testing's FaultDevice fails exactly the requests
// its plan names (once or from then on, with or without effect), and snapcow survives them
// as the kernel does: a failed COW write invalidates that snapshot only.
import { describe, expect, test } from 'vitest'
import { MemoryDevice, openOrigin } from '../../index.js'
import { CrashDevice, CrashedError, FaultDevice, seededRandom } from '../../testing.js'

const block = (value: number) => new Uint8Array(512).fill(value)

describe('FaultDevice', () => {
  test('fails only the nth request of its kind, without effect, with EIO naming it', async () => {
    const inner = new MemoryDevice(8192)
    const dev = new FaultDevice(inner, { op: 'write', nth: 2 })
    await dev.read(0, new Uint8Array(512)) // reads are not counted
    await dev.write(0, block(1))
    await expect(dev.write(512, block(2))).rejects.toMatchObject({ code: 'EIO', message: 'injected fault: write of 512 bytes at offset 512' })
    await dev.write(1024, block(3))
    const back = new Uint8Array(1536)
    await inner.read(0, back)
    expect([back[0], back[512], back[1024]]).toEqual([1, 0, 3])
    expect(dev.faultsInjected).toBe(1)
  })

  test("'from-then-on' fails every later request of the kind; takesEffect writes first", async () => {
    const inner = new MemoryDevice(8192)
    const dev = new FaultDevice(inner, { op: 'write', nth: 1, mode: 'from-then-on', takesEffect: true })
    await expect(dev.write(0, block(5))).rejects.toThrow(/injected fault/)
    await expect(dev.write(512, block(6))).rejects.toThrow(/injected fault/)
    await expect(dev.flush()).resolves.toBeUndefined()
    const back = new Uint8Array(1024)
    await inner.read(0, back)
    expect([back[0], back[512]]).toEqual([5, 6])
    expect(dev.faultsInjected).toBe(2)
  })

  test('without op every request counts; a custom error is used', async () => {
    const dev = new FaultDevice(new MemoryDevice(4096), { nth: 3, error: (op) => new Error(`custom ${op}`) })
    await dev.write(0, block(1))
    await dev.read(0, new Uint8Array(512))
    await expect(dev.flush()).rejects.toThrow('custom flush')
    await dev.flush() // once only
    dev.arm({ nth: 1, mode: 'from-then-on' })
    await expect(dev.read(0, new Uint8Array(512))).rejects.toThrow('injected fault: read of 512 bytes at offset 0')
    dev.disarm()
    await dev.read(0, new Uint8Array(512))
  })

  test('forced-unit-access writes pass through when the inner device has them, and count as writes', async () => {
    const inner = new MemoryDevice(4096)
    const dev = new FaultDevice(inner, { op: 'write', nth: 2 })
    await dev.writeFua!(0, block(4))
    await expect(dev.writeFua!(512, block(5))).rejects.toMatchObject({ code: 'EIO' })
    const back = new Uint8Array(1024)
    await inner.read(0, back)
    expect([back[0], back[512]]).toEqual([4, 0])
    const plain = { size: 4096, read: inner.read.bind(inner), write: inner.write.bind(inner), flush: inner.flush.bind(inner), close: inner.close.bind(inner) }
    expect(new FaultDevice(plain).writeFua).toBeUndefined()
  })

  test('a bad plan is refused before any I/O, naming the field', () => {
    const inner = new MemoryDevice(4096)
    expect(() => new FaultDevice(inner).arm({ nth: -1 })).toThrow(/got -1/)
    expect(() => new FaultDevice(inner, { nth: 0 })).toThrow(/nth must be an integer ≥ 1, got 0/)
    expect(() => new FaultDevice(inner, { nth: 1, op: 'trim' as 'read' })).toThrow(/op must be/)
    expect(() => new FaultDevice(inner, { nth: 1, mode: 'always' as 'once' })).toThrow(/mode must be/)
  })

  test('a failed COW write invalidates that snapshot only; the origin write and the other snapshot go on', async () => {
    const origin = await openOrigin(new MemoryDevice(1 << 16))
    const faulty = new FaultDevice(new MemoryDevice(1 << 16))
    const broken = await origin.createSnapshot(faulty, { chunkSize: 4096 })
    const healthy = await origin.createSnapshot(new MemoryDevice(1 << 16), { chunkSize: 4096 })
    faulty.arm({ op: 'write', nth: 1 }) // the copy of chunk 0 into `broken`'s COW
    await origin.write(0, new Uint8Array(4096).fill(7))
    const back = new Uint8Array(4096)
    await origin.read(0, back)
    expect(back[0]).toBe(7)
    expect(broken.status().state).toBe('invalid')
    expect(healthy.status().state).toBe('active')
    await healthy.read(0, back)
    expect(back[0]).toBe(0)
    expect(faulty.faultsInjected).toBe(1)
    await origin.close()
  })
})

describe('CrashDevice.cut', () => {
  test('cuts the power now: later requests fail, and the image keeps flushed writes and loses or keeps unflushed ones', async () => {
    const dev = new CrashDevice(new Uint8Array(4096))
    await dev.write(0, block(1))
    await dev.flush()
    await dev.write(512, block(2))
    const lost = dev.cut()
    await expect(dev.write(1024, block(3))).rejects.toBeInstanceOf(CrashedError)
    const back = new Uint8Array(1024)
    await lost.read(0, back)
    expect([back[0], back[512]]).toEqual([1, 0])
    const seen = new Set<number>()
    for (let seed = 0; seed < 16; seed++) {
      await dev.cut({ random: seededRandom(seed) }).read(0, back)
      expect(back[0]).toBe(1)
      seen.add(back[512]!)
    }
    expect([...seen].sort()).toEqual([0, 2]) // a random cut keeps some unflushed writes and loses others
  })
})
