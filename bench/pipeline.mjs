#!/usr/bin/env node
// Evaluation from image files, end to end (decode, resize, patchify, tokenize, generate, parse): the lever of
// image preprocessing on worker threads, made ahead while the native model runs. Measures, for each number of
// image workers, the images per second of preprocessing alone and the samples per second of predict() over
// synthetic 1080×2400 screenshots at PIGG's pixel limits. 0 workers means the JS thread (the next batch is still
// made ahead, since the model runs off that thread).
//
//   node bench/pipeline.mjs [--config tiny|2b|4b|8b] [--device cpu|cuda] [--samples 32] [--batch 8]
//                           [--workers 0,1,4] [--new-tokens 20] [--threads N] [--name NAME] [--work DIR] [--out bench/results]
//
// Writes <out>/pipeline-<name>.json in the bench/results format (pigg-only rows: transformers and ratio null);
// `node bench/table.mjs` renders it into README.md.
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writePiggOnlyResults } from './pigg-only-results.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pigg = await import(join(root, 'dist', 'index.js'));
// PIGG's intended pixel limits (966 image tokens for 1080×2400) and pigg's own decoding, as the recorded figures were
// measured; pigg eval's PIGG-exact default feeds 2550 image tokens (README, "PIGG-exact evaluation").
const DEFAULT_PROMPT = { style: 'pigg', image: { ...pigg.PIGG_PIXELS } };

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const config = arg('config', 'tiny');
const device = arg('device', 'cpu');
const dtype = device.startsWith('cuda') ? 'bf16' : 'fp32';
const count = Number(arg('samples', '32'));
const batchSize = Number(arg('batch', '8'));
const newTokens = Number(arg('new-tokens', '20'));
const workerCounts = arg('workers', `0,1,${pigg.defaultImageWorkers()}`).split(',').map(Number).filter((w, i, all) => all.indexOf(w) === i);
const name = arg('name', `${device.split(':')[0]}-${config}`);
const work = resolve(arg('work', join(tmpdir(), 'pigg-gpu-bench')));
const outDir = resolve(arg('out', join(root, 'bench', 'results')));
const log = (message) => console.error(`[pipeline] ${message}`);

const modelDir = join(work, `model-${config}-${dtype}`);
if (!existsSync(join(modelDir, 'config.json'))) {
  log(`writing random ${config} weights to ${modelDir}`);
  await pigg.initRandomModel(config, modelDir, { dtype, device: 'cpu', seed: 1 });
}
const dataDir = join(work, `synth-1080x2400-${count}`);
if (!existsSync(join(dataDir, 'manifest.jsonl'))) {
  log(`writing ${count} synthetic 1080×2400 screenshots to ${dataDir}`);
  await pigg.writeSynthDataset(dataDir, { users: 1, personal: 1, samplesPerUser: count, seed: 'pigg-pipeline-bench', small: false, force: true });
}
const samples = (await pigg.readDataset(dataDir)).samples.slice(0, count);
const tokenizer = pigg.QwenTokenizer.fromDir(modelDir);
const threads = arg('threads') === undefined ? undefined : Number(arg('threads'));
const model = await pigg.Qwen3VL.load(modelDir, { device, dtype, threads });
const rows = [];
const add = (metric, unit, value, workers) => rows.push({
  bench: 'pipeline', config: `${config} ${device} ${dtype}, ${count} screenshots 1080×2400 → 966 image tokens, batch ${batchSize}, ${newTokens} new tokens, image workers ${workers}${threads ? `, ${threads} engine threads` : ''}`,
  metric, unit, pigg: Number(value.toPrecision(4)), transformers: null, ratio: null,
});
try {
  const options = (images) => ({ settings: DEFAULT_PROMPT, batchSize, maxNewTokens: newTokens, images });
  await pigg.predict(model, tokenizer, samples.slice(0, batchSize), dataDir, options(undefined)); // warm-up
  for (const workers of workerCounts) {
    const pool = new pigg.ImagePool(workers);
    try {
      let start = performance.now();
      await Promise.all(samples.map((s) => pool.process(join(dataDir, s.image), DEFAULT_PROMPT.image)));
      const imagesPerSecond = count / ((performance.now() - start) / 1000);
      start = performance.now();
      await pigg.predict(model, tokenizer, samples, dataDir, options(pool.process));
      const samplesPerSecond = count / ((performance.now() - start) / 1000);
      log(`workers ${workers}: preprocessing ${imagesPerSecond.toFixed(2)} images/s, predict ${samplesPerSecond.toFixed(2)} samples/s`);
      add('images per second, preprocessing alone', 'images/s', imagesPerSecond, workers);
      add('samples per second, predict() from image files', 'samples/s', samplesPerSecond, workers);
    } finally {
      await pool.close();
    }
  }
} finally {
  model.dispose();
}
const file = writePiggOnlyResults({ bench: 'pipeline', name, outDir, device, torch: pigg.engineVersions().torch, rows });
log(`wrote ${file}`);
