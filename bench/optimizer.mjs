#!/usr/bin/env node
// The optimizer step alone: a training step on a 16-token batch, so that clipping and AdamW dominate, on a model
// whose parameters are mostly embedding and head (text 4 × 1024, SwiGLU 3072, the real 151,936 vocabulary,
// untied: 470M trainable parameters). Per update mode: the median step time, the median of the step's
// clipping + AdamW part (StepReport.optimizerSeconds) and the peak RSS, each mode in its own child process.
//
//   node bench/optimizer.mjs [--name NAME] [--steps 5] [--device cpu|cuda] [--out bench/results]
//
// Writes <out>/optimizer-<name>.json (pigg-only rows); `node bench/table.mjs` renders it into README.md.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs, writePiggOnlyResults } from './pigg-only-results.mjs';
import { syntheticBatch } from './synthetic-batch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addon = () => createRequire(import.meta.url)('node-gyp-build')(root);
const VARIANTS = [['fp32', 'master'], ['bf16', 'master'], ['bf16', 'kahan'], ['bf16', 'stochastic'], ['bf16', 'pure']];
const VOCAB = 151936;
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

function benchConfig() {
  const config = JSON.parse(readFileSync(join(root, 'test/fixtures/qwen3vl-tiny/models/tiny-untied/config.json'), 'utf8'));
  Object.assign(config.text_config, { hidden_size: 1024, intermediate_size: 3072, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 128, vocab_size: VOCAB });
  config.text_config.rope_scaling.mrope_section = [24, 20, 20];
  Object.assign(config.vision_config, { depth: 1, deepstack_visual_indexes: [0], out_hidden_size: 1024 });
  return config;
}

async function child() {
  const [modelDir, dtype, updateMode, device, steps] = process.argv.slice(3);
  const engine = addon();
  const model = await engine.load(modelDir, { dtype, device });
  const inputs = syntheticBatch(1, 16, VOCAB);
  const trainer = await model.createTrainer({ learningRate: 1e-4, weightDecay: 0.01, updateMode, gradientCheckpointing: false });
  await trainer.step([inputs]); // warm-up: allocates the gradients and the optimizer state
  const times = [], optimizer = [];
  for (let k = 0; k < Number(steps); k++) {
    const report = await trainer.step([inputs]);
    times.push(report.seconds);
    optimizer.push(report.optimizerSeconds ?? NaN); // NaN: an engine from before the report had it
  }
  const info = await model.info();
  console.log(JSON.stringify({ step: median(times), optimizer: median(optimizer), peakRss: process.resourceUsage().maxRSS * 1024,
    peakDevice: info.deviceMemory?.peakAllocated ?? null, parameters: (await trainer.info()).trainableParameters }));
  model.dispose();
}

async function main() {
  const { device, steps, name, outDir } = benchArgs();
  const work = join(tmpdir(), 'pigg-optimizer-bench');
  const rows = [];
  for (const [dtype, mode] of VARIANTS) {
    const modelDir = join(work, `model-${dtype}`);
    if (!existsSync(join(modelDir, 'config.json'))) await addon().initRandom(JSON.stringify(benchConfig()), modelDir, { dtype, seed: 1 });
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', modelDir, dtype, mode, device, steps], {
      encoding: 'utf8', env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' },
    });
    const r = JSON.parse(out.trim().split('\n').pop());
    const config = `text 4×1024 + untied 151,936 vocab (${(r.parameters / 1e6).toFixed(0)}M trainable), ${dtype}${dtype === 'bf16' ? ` ${mode}` : ''}, 1×16 tokens, ${device}`;
    const row = (metric, unit, value) => rows.push({ bench: 'optimizer', config, metric, unit, pigg: Number.isFinite(value) ? Number(value.toPrecision(4)) : null, transformers: null, ratio: null });
    row(`step time (median of ${steps})`, 's', r.step);
    row('of which clipping and AdamW (median)', 's', r.optimizer);
    if (r.peakDevice) row('peak allocated (CUDA caching allocator)', 'GiB', r.peakDevice / 2 ** 30);
    else row('peak RSS', 'MiB', r.peakRss / 2 ** 20);
    console.error(`${config}: step ${r.step.toFixed(3)} s, optimizer ${r.optimizer?.toFixed(3)} s`);
  }
  const file = writePiggOnlyResults({ bench: 'optimizer', name, outDir, device, torch: JSON.parse(addon().versions()).torch, rows });
  console.error(`wrote ${file}`);
}

if (process.argv[2] === '--child') await child();
else await main();
