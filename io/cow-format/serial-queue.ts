// io/cow-format/serial-queue.ts: runs async jobs one after another, in the order given,
// like the kernel's single-threaded store callbacks (spec §8). A failed job does not stop
// the ones after it.

/** @internal */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve()

  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(job)
    this.#tail = result.catch(() => undefined)
    return result
  }
}
