#!/usr/bin/env node
// Decode steps of generate(): the time per step (generate's own device-synchronized decode timing / the steps it
// ran) and the peak RSS, on text-only random prompts, batch 1 and a left-padded batch of 4, EOS off (so exactly
// --new-tokens tokens per row). Two shapes: the demo's tiny model (text 2×64) and "mid", the 2B text layer shape
// (2048 hidden, 16 query / 8 kv heads of 128, ffn 6144) with 4 layers, the real vocabulary and a 1-block vision
// tower, which a 2-core box runs in fp32.
//
//   node bench/decode.mjs [--name NAME] [--configs tiny,mid] [--prompt 512] [--new-tokens 32] [--runs 3] [--rounds 2]
//                         [--label LABEL] [--baseline DIR --baseline-label LABEL] [--device cpu|cuda] [--out bench/results]
//
// --baseline names another built pigg (a folder holding its dist/, build/Release/ and package.json, e.g. a copy
// made before a change): each case then runs in both, alternating for --rounds rounds, each run in its own child
// process, and the greedy tokens of the two must be equal. Writes <out>/decode-<name>.json (pigg-only rows).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, benchArgs, writePiggOnlyResults } from './pigg-only-results.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const peakRss = () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;

// Left-padded random prompts: row r keeps the last length - r·length/8 tokens (pad id 0, mask 0 before them).
function prompts(batch, length, vocab) {
  const ids = new BigInt64Array(batch * length);
  const mask = new BigInt64Array(batch * length);
  let state = 4242;
  for (let r = 0; r < batch; r++) {
    const pad = Math.floor((r * length) / 8);
    for (let i = pad; i < length; i++) {
      state = (state * 1103515245 + 12345) % 2147483648;
      ids[r * length + i] = BigInt(state % Math.min(vocab, 100000));
      mask[r * length + i] = 1n;
    }
  }
  return { input_ids: { dtype: 'I64', shape: [batch, length], data: ids }, attention_mask: { dtype: 'I64', shape: [batch, length], data: mask } };
}

async function child() {
  const spec = JSON.parse(process.argv[3]);
  const { Qwen3VL } = await import(join(spec.pigg, 'dist', 'index.js'));
  const model = await Qwen3VL.load(spec.model, { device: spec.device, dtype: 'fp32' });
  // A short forward pages the memory-mapped weights in before the baseline.
  await model.forward(prompts(1, 8, spec.vocab), { outputs: ['logits'] });
  const device = spec.device.startsWith('cuda');
  const memory = async () => (device ? (await model.info()).deviceMemory.peakAllocated : peakRss());
  const baseline = await memory();
  const inputs = prompts(spec.batch, spec.prompt, spec.vocab);
  const options = { maxNewTokens: spec.newTokens, eosTokenIds: [] };
  const first = await model.generate(inputs, options); // warm-up
  const steps = [];
  for (let k = 0; k < spec.runs; k++) {
    const { tokens, timing } = await model.generate(inputs, options);
    if (JSON.stringify(tokens) !== JSON.stringify(first.tokens)) throw new Error('greedy tokens differ between runs');
    steps.push(timing.decode / (spec.newTokens - 1));
  }
  console.log(JSON.stringify({ steps, tokens: first.tokens, baseline, peak: await memory() }));
  model.dispose();
}

async function modelDir(config, device) {
  const dir = join(tmpdir(), 'pigg-decode-bench', `model-${config}-fp32`);
  if (existsSync(join(dir, 'config.json'))) return dir;
  const { initRandomModel, modelConfig } = await import(join(root, 'dist', 'index.js'));
  if (config === 'tiny') {
    await initRandomModel('tiny', dir, { dtype: 'fp32', device, seed: 1 });
    return dir;
  }
  const { native } = await import(join(root, 'dist', 'engine', 'native.js'));
  const shape = modelConfig('2b');
  shape.text_config.num_hidden_layers = 4;
  Object.assign(shape.vision_config, { depth: 1, deepstack_visual_indexes: [0] });
  await native().initRandom(JSON.stringify(shape), dir, { dtype: 'fp32', device, seed: 1 });
  return dir;
}

async function main() {
  const { device, name, outDir } = benchArgs();
  const configs = arg('configs', 'tiny,mid').split(',');
  const prompt = Number(arg('prompt', '512'));
  const newTokens = Number(arg('new-tokens', '32'));
  const runs = Number(arg('runs', '3'));
  const rounds = Number(arg('rounds', '2'));
  const baseline = arg('baseline', null);
  const builds = [{ label: arg('label', 'this tree'), pigg: root }];
  if (baseline) builds.unshift({ label: arg('baseline-label', baseline), pigg: resolve(baseline) });
  const { engineVersions } = await import(join(root, 'dist', 'index.js'));
  const load = [loadavg().map((v) => v.toFixed(2))];
  const rows = [];
  for (const config of configs) {
    if (!['tiny', 'mid'].includes(config)) throw new Error(`--configs: '${config}' is not tiny or mid`);
    const model = await modelDir(config, device);
    const shape = config === 'tiny' ? 'tiny (text 2×64, tied 151,936 vocab)' : 'mid (text 4×2048, 16/8 heads of 128, ffn 6144, tied 151,936 vocab)';
    for (const batch of [1, 4]) {
      const results = builds.map(() => []);
      for (let round = 0; round < rounds; round++) {
        builds.forEach((build, b) => {
          const spec = { pigg: build.pigg, model, device, batch, prompt, newTokens, runs, vocab: 151936 };
          const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(spec)], {
            encoding: 'utf8', env: { ...process.env, PIGG_CPU_CACHE_MB: '0', MALLOC_MMAP_THRESHOLD_: '131072' },
          });
          results[b].push(JSON.parse(out.trim().split('\n').pop()));
        });
      }
      const tokens = results.map((r) => JSON.stringify(r[0].tokens));
      if (tokens.some((t) => t !== tokens[0])) throw new Error(`${config} batch ${batch}: the greedy tokens of ${builds.map((b) => b.label).join(' and ')} differ`);
      builds.forEach((build, b) => {
        const steps = results[b].flatMap((r) => r.steps);
        const step = median(steps);
        const peak = Math.max(...results[b].map((r) => r.peak));
        const above = median(results[b].map((r) => r.peak - r.baseline));
        const caseConfig = `${shape}, fp32, ${device}, batch ${batch}${batch > 1 ? ' left-padded' : ''}, prompt ${prompt} tokens, ${newTokens} new tokens, ${build.label}`;
        const row = (metric, unit, value) => rows.push({ bench: 'decode', config: caseConfig, metric, unit, pigg: Number(value.toPrecision(4)), transformers: null, ratio: null });
        row(`decode step time (median of ${steps.length}: ${rounds} processes × ${runs} calls)`, 's', step);
        row('decode tokens per second (all rows)', 'tokens/s', batch / step);
        row(device.startsWith('cuda') ? 'peak allocated (CUDA caching allocator)' : 'peak RSS', 'MiB', peak / 2 ** 20);
        row('generate memory above the loaded model (median)', 'MiB', above / 2 ** 20);
        console.error(`${caseConfig}: step ${step.toFixed(4)} s (${steps.map((s) => s.toFixed(4)).join(' ')}), peak ${(peak / 2 ** 20).toFixed(0)} MiB, +${(above / 2 ** 20).toFixed(1)} MiB`);
      });
    }
  }
  load.push(loadavg().map((v) => v.toFixed(2)));
  const file = writePiggOnlyResults({ bench: 'decode', name, outDir, device, torch: engineVersions().torch, rows, extra: { loadAverage: { start: load[0], end: load[1] } } });
  console.error(`wrote ${file}; load average (1, 5, 15 min) ${load[0].join(' ')} at the start, ${load[1].join(' ')} at the end`);
}

if (process.argv[2] === '--child') await child();
else await main();
