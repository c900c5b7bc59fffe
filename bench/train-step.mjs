#!/usr/bin/env node
// CPU training-step benchmark: time per optimizer step, supervised/input tokens per second and peak RSS of one
// training process, on a small random Qwen3-VL (written with the engine's initRandom; text-only synthetic
// batches). Each variant runs in its own child process, since getrusage's peak RSS cannot be reset.
//
//   node bench/train-step.mjs [--name NAME] [--steps 5] [--batch 2] [--seq 512] [--out bench/results]
//
// Writes <out>/cpu-<NAME>.json: {device, date, versions: {torch, transformers, pigg}, rows: [{bench, config,
// metric, unit, pigg, transformers, ratio}]}. With PIGG_HF_PYTHON (a python with transformers) the same steps
// run in transformers too (scripts/hf-crosscheck.py "bench": forward, backward, clip_grad_norm_, torch AdamW;
// its gradient_checkpointing_enable for the checkpointed rows; bf16 "pure" = bf16 weights and moments) and
// ratio > 1 means pigg is better (transformers / pigg for times and memory, pigg / transformers for
// throughputs); otherwise those columns are null. bf16 "master" has no transformers twin.
// glibc's mmap threshold is pinned in the children (MALLOC_MMAP_THRESHOLD_) so RSS follows live memory.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, hostname, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { syntheticBatch } from './synthetic-batch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addon = () => createRequire(import.meta.url)('node-gyp-build')(root);

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

// The small benchmark config: the tiny fixture's layout widened (8 layers × 256 hidden, SwiGLU 1024, GQA 4/2
// heads of 64), vocabulary 2048; a one-block vision tower (unused by the text-only batches).
function benchConfig() {
  const config = JSON.parse(readFileSync(join(root, 'test/fixtures/qwen3vl-tiny/models/tiny-untied/config.json'), 'utf8'));
  Object.assign(config.text_config, { hidden_size: 256, intermediate_size: 1024, num_hidden_layers: 8, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64 });
  config.text_config.rope_scaling.mrope_section = [16, 8, 8];
  Object.assign(config.vision_config, { depth: 1, deepstack_visual_indexes: [0], out_hidden_size: 256 });
  return config;
}

async function child() {
  const [modelDir, dtype, updateMode, checkpointing, steps, batch, seq] = process.argv.slice(3);
  const engine = addon();
  const model = await engine.load(modelDir, { dtype });
  const vocab = (await model.info()).config.text.vocab;
  const inputs = syntheticBatch(Number(batch), Number(seq), vocab);
  // Baseline: the loaded model, before the trainer allocates moments (torch's AdamW allocates them lazily in
  // its first step, so both sides count moments, gradients and activations above this line).
  // A one-row, 8-token forward first pages in the (memory-mapped) text weights.
  const touch = syntheticBatch(1, 8, vocab);
  await model.forward({ input_ids: touch.input_ids, attention_mask: touch.attention_mask }, ['logits']);
  const baselineKiB = process.resourceUsage().maxRSS;
  const trainer = await model.createTrainer({ learningRate: 1e-4, updateMode, gradientCheckpointing: checkpointing === '1' });
  await trainer.step([inputs]); // warm-up (first-touch allocations, kernel selection)
  const times = [];
  let tokens = 0, inputTokens = 0;
  for (let k = 0; k < Number(steps); k++) {
    const start = performance.now();
    const report = await trainer.step([inputs]);
    times.push((performance.now() - start) / 1000);
    tokens = report.tokens;
    inputTokens = report.inputTokens;
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(JSON.stringify({ median, min: times[0], tokens, inputTokens, baselineKiB, peakKiB: process.resourceUsage().maxRSS }));
  model.dispose();
}

async function main() {
  const name = arg('name', hostname());
  const steps = Number(arg('steps', '5'));
  const batch = Number(arg('batch', '2'));
  const seq = Number(arg('seq', '512'));
  const outDir = resolve(arg('out', join(root, 'bench', 'results')));
  const engine = addon();
  const work = mkdtempSync(join(tmpdir(), 'pigg-bench-'));
  try {
    const variants = [
      { dtype: 'fp32', updateMode: 'master', checkpointing: false },
      { dtype: 'fp32', updateMode: 'master', checkpointing: true },
      { dtype: 'bf16', updateMode: 'master', checkpointing: true },
      { dtype: 'bf16', updateMode: 'pure', checkpointing: true },
    ];
    const models = {};
    for (const dtype of new Set(variants.map((v) => v.dtype))) {
      models[dtype] = join(work, `model-${dtype}`);
      await engine.initRandom(JSON.stringify(benchConfig()), models[dtype], { dtype, seed: 1 });
    }
    const python = process.env.PIGG_HF_PYTHON;
    const batchFile = join(work, 'batch.safetensors');
    const vocab = benchConfig().text_config.vocab_size;
    await engine.writeTensors(batchFile, syntheticBatch(batch, seq, vocab));
    let transformersVersion = null;
    const hfBench = (v) => {
      if (!python || (v.dtype === 'bf16' && v.updateMode !== 'pure')) return null;
      const job = join(work, 'job.json');
      writeFileSync(job, JSON.stringify({ tasks: [{ kind: 'bench', model: models[v.dtype], dtype: v.dtype, checkpointing: v.checkpointing, batch: batchFile, steps }] }));
      const run = spawnSync(python, [join(root, 'scripts', 'hf-crosscheck.py'), job], {
        encoding: 'utf8',
        env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' },
      });
      if (run.status !== 0) throw new Error(`transformers bench failed:\n${run.stderr.slice(-3000)}`);
      const parsed = JSON.parse(run.stdout.trim().split('\n').pop());
      transformersVersion = parsed.versions.transformers;
      return parsed.results[0];
    };
    const rows = [];
    for (const v of variants) {
      const out = execFileSync(
        process.execPath,
        [fileURLToPath(import.meta.url), '--child', models[v.dtype], v.dtype, v.updateMode, v.checkpointing ? '1' : '0', String(steps), String(batch), String(seq)],
        { encoding: 'utf8', env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' } },
      );
      const r = JSON.parse(out.trim().split('\n').pop());
      const h = hfBench(v);
      const config = `text 8×256 (ffn 1024, vocab 2048), batch ${batch}×${seq} tokens, ${v.dtype}${v.dtype === 'bf16' ? ` ${v.updateMode}` : ''}, checkpointing ${v.checkpointing ? 'on' : 'off'}`;
      const lowerIsBetter = (unit) => !unit.endsWith('/s');
      const row = (metric, unit, pigg, transformers) => rows.push({
        bench: 'train-step', config, metric, unit, pigg, transformers,
        ratio: transformers ? Number((lowerIsBetter(unit) ? transformers / pigg : pigg / transformers).toFixed(3)) : null,
      });
      const hf = (fn) => (h ? fn(h) : null);
      row('step time (median)', 's', Number(r.median.toFixed(4)), hf((x) => Number(x.median.toFixed(4))));
      row('input tokens per second', 'tokens/s', Math.round(r.inputTokens / r.median), hf((x) => Math.round(r.inputTokens / x.median)));
      row('supervised tokens per second', 'tokens/s', Math.round(r.tokens / r.median), hf((x) => Math.round(r.tokens / x.median)));
      row('peak RSS', 'MiB', Math.round(r.peakKiB / 1024), hf((x) => Math.round(x.peakKiB / 1024)));
      row('training memory above the loaded model', 'MiB', Math.round((r.peakKiB - r.baselineKiB) / 1024), hf((x) => Math.round((x.peakKiB - x.baselineKiB) / 1024)));
      console.error(
        `${config}: pigg ${r.median.toFixed(3)} s/step, ${Math.round(r.inputTokens / r.median)} tokens/s, peak ${Math.round(r.peakKiB / 1024)} MiB` +
          (h ? ` | transformers ${h.median.toFixed(3)} s/step, peak ${Math.round(h.peakKiB / 1024)} MiB` : ''),
      );
    }
    const versions = JSON.parse(engine.versions());
    const pigg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
    const result = {
      command: `${process.env.PIGG_HF_PYTHON ? 'PIGG_HF_PYTHON=<python with transformers> ' : ''}node bench/train-step.mjs ${process.argv.slice(2).join(' ')}`.trim(),
      device: `${cpus()[0]?.model ?? 'cpu'} × ${cpus().length} threads, ${Math.round(totalmem() / 2 ** 30)} GiB`,
      date: new Date().toISOString(),
      versions: { torch: versions.torch, transformers: transformersVersion, pigg },
      rows,
    };
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `cpu-${name}.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    console.error(`wrote ${file}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') await child();
else await main();
