// cli/progress.ts: progress of a long job: a cli-progress bar with rate and ETA on a TTY,
// plain lines (every 10 %) otherwise, so logs and CI output stay readable.
import cliProgress from 'cli-progress'

export interface Progress {
  update(done: number): void
  stop(): void
}

export function progress(label: string, total: number, unit: string, stream: NodeJS.WriteStream = process.stdout): Progress {
  const started = performance.now()
  const rate = (done: number): string => {
    const seconds = (performance.now() - started) / 1000
    return seconds > 0 ? Math.round(done / seconds).toLocaleString('en-US') : '-'
  }
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar({
      format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}`,
      stream, hideCursor: true, etaBuffer: 50, fps: 10,
    }, cliProgress.Presets.shades_classic)
    bar.start(total, 0, { rate: '-' })
    return {
      update: (done) => bar.update(done, { rate: rate(done) }),
      stop: () => bar.stop(),
    }
  }
  let nextTenth = 0
  const line = (done: number): void => {
    const percent = total === 0 ? 100 : Math.floor((done * 100) / total)
    stream.write(`${label}: ${percent}% (${done}/${total} ${unit}, ${rate(done)} ${unit}/s)\n`)
  }
  return {
    update: (done) => {
      const tenth = total === 0 ? 10 : Math.floor((done * 10) / total)
      if (tenth >= nextTenth) { line(done); nextTenth = tenth + 1 }
    },
    stop: () => undefined,
  }
}
