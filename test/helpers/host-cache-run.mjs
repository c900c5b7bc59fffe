#!/usr/bin/env node
// A few training steps in a fresh process, for the host tensor cache test (the cache is installed when the addon
// loads, so each PIGG_CPU_CACHE_MB setting needs its own process). Usage:
//   node test/helpers/host-cache-run.mjs <modelDir>
// Prints one JSON line: {losses, gradNorms, afterSteps, afterDispose}, the last two being deviceMemory('cpu').
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syntheticBatch } from '../../bench/synthetic-batch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [modelDir] = process.argv.slice(2);
const addon = createRequire(import.meta.url)('node-gyp-build')(root);
const model = await addon.load(modelDir, { dtype: 'fp32' });
const vocab = (await model.info()).config.text.vocab;
const trainer = await model.createTrainer({ learningRate: 1e-3, warmupSteps: 0, totalSteps: 4 });
const losses = [], gradNorms = [];
// Lengths vary from step to step, as a dataset's do: blocks of one size class serve requests of another size.
for (const seq of [96, 64, 96, 80]) {
  const report = await trainer.step([syntheticBatch(2, seq, vocab)]);
  losses.push(report.loss);
  gradNorms.push(report.gradNorm);
}
const afterSteps = JSON.parse(addon.deviceMemory('cpu'));
trainer.dispose?.();
model.dispose();
const afterDispose = JSON.parse(addon.deviceMemory('cpu'));
console.log(JSON.stringify({ losses, gradNorms, afterSteps, afterDispose }));
