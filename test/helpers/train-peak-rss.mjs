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

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const [modelDir, checkpointing, batchArg = '2', seqArg = '512'] = process.argv.slice(2);
if (!modelDir || (checkpointing !== '0' && checkpointing !== '1')) {
  console.error('usage: train-peak-rss.mjs <modelDir> <checkpointing 0|1> [batch] [seq]');
  process.exit(2);
}
const batch = Number(batchArg), seq = Number(seqArg);
const addon = createRequire(import.meta.url)('node-gyp-build')(root);

const model = await addon.load(modelDir, { dtype: 'fp32' });
const info = JSON.parse(await model.info());
const vocab = info.config.text.vocab;
// Deterministic synthetic tokens below the special-token range; the second half of each row is supervised.
const ids = new BigInt64Array(batch * seq);
const labels = new BigInt64Array(batch * seq);
let state = 12345;
for (let i = 0; i < ids.length; i++) {
  state = (state * 1103515245 + 12345) % 2147483648;
  ids[i] = BigInt(state % Math.min(vocab, 1000));
  labels[i] = i % seq >= seq / 2 ? ids[i] : -100n;
}
const inputs = {
  input_ids: { dtype: 'I64', shape: [batch, seq], data: ids },
  attention_mask: { dtype: 'I64', shape: [batch, seq], data: new BigInt64Array(batch * seq).fill(1n) },
  labels: { dtype: 'I64', shape: [batch, seq], data: labels },
};
const trainer = await model.createTrainer(JSON.stringify({ learningRate: 1e-4, gradientCheckpointing: checkpointing === '1' }));
const baselineKiB = process.resourceUsage().maxRSS;
const start = performance.now();
const report = JSON.parse(await trainer.step([inputs]));
const seconds = (performance.now() - start) / 1000;
const peakKiB = process.resourceUsage().maxRSS;
console.log(JSON.stringify({ checkpointing: checkpointing === '1', baselineKiB, peakKiB, stepKiB: peakKiB - baselineKiB, loss: report.loss, seconds }));
model.dispose();
