// Progress for long runs: bars with ETA, loss, lr and throughput on a terminal, one line per event otherwise.
import cliProgress from 'cli-progress';
import type { ProgressEvent } from '../experiments/runs.js';

export function progressReporter(): { onProgress: (event: ProgressEvent) => void; stop: () => void } {
  const tty = process.stderr.isTTY;
  let bar: cliProgress.SingleBar | undefined;
  let barKey = '';
  const stop = () => {
    bar?.stop();
    bar = undefined;
    barKey = '';
  };
  const ensureBar = (key: string, total: number, format: string) => {
    if (barKey === key) return bar!;
    stop();
    bar = new cliProgress.SingleBar({ format, stream: process.stderr, hideCursor: true, etaBuffer: 20 }, cliProgress.Presets.shades_classic);
    bar.start(total, 0, { loss: '-', lr: '-', rate: '-' });
    barKey = key;
    return bar;
  };
  const where = (event: { user?: string; fold?: number }) =>
    `${event.user === undefined ? '' : `user ${event.user}`}${event.fold === undefined ? '' : ` fold ${event.fold}`}`.trim();
  const onProgress = (event: ProgressEvent) => {
    if (event.kind === 'log') {
      stop();
      process.stderr.write(`${event.message}\n`);
      return;
    }
    if (event.kind === 'eval') {
      if (tty) ensureBar(`eval ${where(event)}`, event.total, `eval ${where(event)} [{bar}] {value}/{total} samples | ETA {eta_formatted}`).update(event.done);
      else if (event.done === event.total) process.stderr.write(`eval ${where(event)}: ${event.done}/${event.total} samples\n`);
      return;
    }
    const fields = { loss: event.loss.toFixed(4), lr: event.lr.toExponential(2), rate: event.tokensPerSecond.toFixed(0) };
    if (tty) {
      ensureBar(`train ${where(event)}`, event.totalSteps, `train ${where(event)} [{bar}] {value}/{total} steps | loss {loss} | lr {lr} | {rate} tok/s | ETA {eta_formatted}`)
        .update(event.step, fields);
    } else {
      process.stderr.write(`train ${where(event)} step ${event.step}/${event.totalSteps} loss ${fields.loss} lr ${fields.lr} ${fields.rate} tok/s\n`);
    }
  };
  return { onProgress, stop };
}
