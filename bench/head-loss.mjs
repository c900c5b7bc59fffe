#!/usr/bin/env node
// The training loss through lm_head, fused and chunked (the default) vs the plain logits + cross-entropy
// (fusedHeadLoss: false): a full fine-tuning step of the demo's tiny model (text 2×64, the real 151,936-token
// vocabulary, tied head, fp32, no checkpointing) on text-only batches whose second half is supervised, at a few
// supervised-token counts (PIGG's answers are 10-30 tokens; Qwen-style labels or long answers make thousands).
// Per variant, in its own child process: the median step time and the peak RSS.
//
//   node bench/head-loss.mjs [--name NAME] [--steps 5] [--supervised 32,512,1024] [--device cpu|cuda] [--out bench/results]
//
// Writes <out>/head-loss-<name>.json (pigg-only rows); `node bench/table.mjs` renders it into README.md.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, benchArgs, writePiggOnlyResults } from './pigg-only-results.mjs';
import { syntheticBatch } from './synthetic-batch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pigg = () => import(join(root, 'dist', 'index.js'));
const VOCAB = 151936;
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

// This process image's own peak RSS (VmHWM; ru_maxrss would carry the parent's over execve).
const peakRss = () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;

async function child() {
  const [modelDir, device, fused, supervised, steps] = process.argv.slice(3);
  const { Qwen3VL } = await pigg();
  const model = await Qwen3VL.load(modelDir, { device, dtype: 'fp32' });
  const inputs = syntheticBatch(1, 2 * Number(supervised), VOCAB);
  const trainer = await model.createTrainer({ learningRate: 1e-4, weightDecay: 0.01, gradientCheckpointing: false, fusedHeadLoss: fused === 'fused' });
  let report = await trainer.step([inputs]); // warm-up: allocates the gradients and the optimizer state
  const times = [];
  for (let k = 0; k < Number(steps); k++) {
    report = await trainer.step([inputs]);
    times.push(report.seconds);
  }
  const info = await model.info();
  console.log(JSON.stringify({ step: median(times), loss: report.loss, tokens: report.tokens, peak: info.deviceMemory?.peakAllocated ?? peakRss() }));
  model.dispose();
}

async function main() {
  const { device, steps, name, outDir } = benchArgs();
  const counts = arg('supervised', '32,512,1024').split(',').map(Number);
  const modelDir = join(tmpdir(), 'pigg-head-loss-bench', 'model-tiny-fp32');
  const { initRandomModel, engineVersions } = await pigg();
  if (!existsSync(join(modelDir, 'config.json'))) await initRandomModel('tiny', modelDir, { dtype: 'fp32', device: 'cpu', seed: 1 });
  const rows = [];
  for (const supervised of counts) {
    const losses = {};
    for (const variant of ['plain', 'fused']) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', modelDir, device, variant, String(supervised), steps], {
        encoding: 'utf8', env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' },
      });
      const r = JSON.parse(out.trim().split('\n').pop());
      losses[variant] = r.loss;
      const config = `tiny (text 2×64, tied 151,936 vocab), fp32 full fine-tune, 1×${2 * supervised} tokens of which ${r.tokens} supervised, ${device}, ` +
        (variant === 'fused' ? 'fused chunked head loss' : 'plain logits + cross-entropy');
      const row = (metric, unit, value) => rows.push({ bench: 'head-loss', config, metric, unit, pigg: Number(value.toPrecision(4)), transformers: null, ratio: null });
      row(`step time (median of ${steps})`, 's', r.step);
      row(device.startsWith('cuda') ? 'peak allocated (CUDA caching allocator)' : 'peak RSS', 'MiB', r.peak / 2 ** 20);
      console.error(`${config}: step ${r.step.toFixed(3)} s, peak ${(r.peak / 2 ** 20).toFixed(0)} MiB, loss ${r.loss}`);
    }
    // Same loss either way (the last step's, after identical updates).
    if (Math.abs(losses.fused - losses.plain) > 1e-4 * Math.abs(losses.plain)) throw new Error(`losses differ: ${JSON.stringify(losses)}`);
  }
  const file = writePiggOnlyResults({ bench: 'head-loss', name, outDir, device, torch: engineVersions().torch, rows });
  console.error(`wrote ${file}`);
}

if (process.argv[2] === '--child') await child();
else await main();
