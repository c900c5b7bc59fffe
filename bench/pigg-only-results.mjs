// The results file of a pigg-only bench (bench/optimizer.mjs, bench/pipeline.mjs): the bench/results format with
// the transformers columns null, the machine described as the command saw it.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The value given after --<name> on the command line, or the fallback. */
export function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

/** The flags of a pigg-only bench: --device (cpu), --steps (5), --name (the device kind), --out (bench/results). */
export function benchArgs() {
  const device = arg('device', 'cpu');
  return { device, steps: arg('steps', '5'), name: arg('name', device.split(':')[0]), outDir: resolve(arg('out', join(root, 'bench', 'results'))) };
}

/** Writes <outDir>/<bench>-<name>.json and returns its path; `extra` adds fields (e.g. the box's load average). */
export function writePiggOnlyResults({ bench, name, outDir, device, torch, rows, extra = {} }) {
  const result = {
    command: `node bench/${bench}.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    device: `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()} threads, ${Math.round(totalmem() / 2 ** 30)} GiB${device.startsWith('cuda') ? ` + ${device}` : ''}`,
    date: new Date().toISOString(),
    versions: { torch, transformers: null, pigg: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version },
    ...extra,
    rows,
  };
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${bench}-${name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
