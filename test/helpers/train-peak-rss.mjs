#!/usr/bin/env node
// Peak resident memory of one training step, measured in a fresh process (getrusage's high-water mark cannot be
// reset, so each variant needs its own process). Usage:
//   node test/helpers/train-peak-rss.mjs <modelDir> <checkpointing 0|1> [batch] [seq]
// Prints one JSON line: {checkpointing, baselineKiB, peakKiB, stepKiB, loss, seconds}. baselineKiB is the
// high-water mark after loading the model and allocating the trainer (weights, moments); stepKiB is what one
// optimizer step on a synthetic text-only batch adds on top of it (activations, gradients, temporaries).
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syntheticBatch } from '../../bench/synthetic-batch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [modelDir, checkpointing, batchArg = '2', seqArg = '512'] = process.argv.slice(2);
if (!modelDir || (checkpointing !== '0' && checkpointing !== '1')) {
  console.error('usage: train-peak-rss.mjs <modelDir> <checkpointing 0|1> [batch] [seq]');
  process.exit(2);
}
const batch = Number(batchArg), seq = Number(seqArg);
const addon = createRequire(import.meta.url)('node-gyp-build')(root);

const model = await addon.load(modelDir, { dtype: 'fp32' });
const info = await model.info();
const vocab = info.config.text.vocab;
const inputs = syntheticBatch(batch, seq, vocab);
const trainer = await model.createTrainer({ learningRate: 1e-4, gradientCheckpointing: checkpointing === '1' });
const baselineKiB = process.resourceUsage().maxRSS;
const start = performance.now();
const report = await trainer.step([inputs]);
const seconds = (performance.now() - start) / 1000;
const peakKiB = process.resourceUsage().maxRSS;
console.log(JSON.stringify({ checkpointing: checkpointing === '1', baselineKiB, peakKiB, stepKiB: peakKiB - baselineKiB, loss: report.loss, seconds }));
model.dispose();
