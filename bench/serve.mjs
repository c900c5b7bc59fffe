#!/usr/bin/env node
// `pigg serve` under load, over loopback only (127.0.0.1): a bounded client loop (a fixed number of requests and
// a time limit per phase) against the CLI server in a child process, on random weights that decode freely to a
// fixed token budget (every request costs the same).
//
//   node bench/serve.mjs [--config tiny|2b|4b|8b] [--device cpu|cuda] [--requests 32] [--concurrency 1,4,16]
//                        [--adapters 16] [--max-batch 8] [--new-tokens 16] [--rss-requests 1000] [--rank 8]
//                        [--time-limit 600] [--small | --no-small] [--threads N] [--name NAME] [--work DIR] [--out bench/results]
//
// Measures, on a server with --max-batch B (default 8):
//   - requests/s, p50 and p99 latency at each concurrency, with every request on one adapter and with requests
//     spread round-robin over 16 different adapters;
//   - the server's RSS (its /metrics process_resident_memory_bytes) before and after --rss-requests requests
//     (16 adapters, the highest concurrency);
//   - at the highest concurrency: mixed-adapter throughput / single-adapter throughput (goal >= 0.8), and
//     mixed-adapter batched throughput / one request at a time (a --max-batch 1 server, one adapter) (goal >= 3 at B 8);
//   - on CUDA, the device memory the server holds after the load (pigg_device_memory_bytes).
// Adapters are random PEFT LoRA folders of rank --rank over every linear layer of the language model (PIGG's
// targets); their values do not matter for speed. Images: synthetic screenshots, small (PIGG's pixel limits
// shrink 1080×2400 to 966 image tokens; --small uses 200×440 ones at 64-100k pixels) by default on the CPU.
//
// Writes <out>/serve-<name>.json in the bench/results format (pigg-only rows); `node bench/table.mjs` renders it.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writePiggOnlyResults } from './pigg-only-results.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pigg = await import(join(root, 'dist', 'index.js'));
const CLI = join(root, 'dist', 'cli', 'index.js');
const HOST = '127.0.0.1';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const flag = (name) => process.argv.includes(`--${name}`);

const config = arg('config', 'tiny');
const device = arg('device', 'cpu');
const dtype = device.startsWith('cuda') ? 'bf16' : 'fp32';
const requests = Number(arg('requests', '32'));
const concurrencies = arg('concurrency', '1,4,16').split(',').map(Number);
const adapterCount = Number(arg('adapters', '16'));
const maxBatch = Number(arg('max-batch', '8'));
const newTokens = Number(arg('new-tokens', '16'));
const rssRequests = Number(arg('rss-requests', '1000'));
const rank = Number(arg('rank', '8'));
const timeLimit = Number(arg('time-limit', '600')) * 1000;
const small = flag('no-small') ? false : flag('small') || !device.startsWith('cuda');
const threads = arg('threads');
const name = arg('name', `${device.split(':')[0]}-${config}`);
const work = resolve(arg('work', join(tmpdir(), 'pigg-serve-bench')));
const outDir = resolve(arg('out', join(root, 'bench', 'results')));
const pixels = small ? { minPixels: 65536, maxPixels: 100352 } : pigg.PIGG_PIXELS;
const log = (message) => console.error(`[serve] ${message}`);
for (const [k, v] of Object.entries({ requests, adapterCount, maxBatch, newTokens, rssRequests, rank })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${v}`);
}

// The model, the adapters, the screenshots.
const modelDir = join(work, `model-${config}-${dtype}`);
if (!existsSync(join(modelDir, 'config.json'))) {
  log(`writing random ${config} weights to ${modelDir}`);
  await pigg.initRandomModel(config, modelDir, { dtype, device: 'cpu', seed: 1 });
}

/** A random PEFT LoRA folder for the model's language layers. */
function writeAdapter(dir, seed) {
  if (existsSync(join(dir, 'adapter_model.safetensors'))) return;
  const text = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')).text_config;
  const { hidden_size: hidden, intermediate_size: inter, num_attention_heads: heads, num_key_value_heads: kv, head_dim: headDim, num_hidden_layers: layers } = text;
  const shapes = {
    'self_attn.q_proj': [hidden, heads * headDim], 'self_attn.k_proj': [hidden, kv * headDim], 'self_attn.v_proj': [hidden, kv * headDim],
    'self_attn.o_proj': [heads * headDim, hidden], 'mlp.gate_proj': [hidden, inter], 'mlp.up_proj': [hidden, inter], 'mlp.down_proj': [inter, hidden],
  };
  let state = seed * 2654435761 >>> 0 || 1;
  const random = (n, scale) => {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      data[i] = ((state >>> 8) / 2 ** 24 - 0.5) * 2 * scale;
    }
    return data;
  };
  const tensors = {};
  for (let layer = 0; layer < layers; layer++) {
    for (const [module, [inputs, outputs]] of Object.entries(shapes)) {
      const key = `base_model.model.model.language_model.layers.${layer}.${module}`;
      tensors[`${key}.lora_A.weight`] = { dtype: 'F32', shape: [rank, inputs], data: random(rank * inputs, 1 / Math.sqrt(inputs)) };
      tensors[`${key}.lora_B.weight`] = { dtype: 'F32', shape: [outputs, rank], data: random(outputs * rank, 0.01) };
    }
  }
  mkdirSync(dir, { recursive: true });
  pigg.writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
  writeFileSync(join(dir, 'adapter_config.json'), `${JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: rank, lora_alpha: 2 * rank, lora_dropout: 0, bias: 'none', fan_in_fan_out: false,
    target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], base_model_name_or_path: modelDir,
  }, null, 2)}\n`);
}
const adaptersDir = join(work, `adapters-${config}-r${rank}`);
const adapterNames = Array.from({ length: adapterCount }, (_, i) => `u${String(i).padStart(2, '0')}`);
adapterNames.forEach((n, i) => writeAdapter(join(adaptersDir, n), i + 1));

const dataDir = join(work, `synth-${small ? 'small' : '1080x2400'}`);
if (!existsSync(join(dataDir, 'manifest.jsonl'))) {
  log(`writing synthetic screenshots to ${dataDir}`);
  await pigg.writeSynthDataset(dataDir, { users: 1, personal: 1, samplesPerUser: 16, seed: 'pigg-serve-bench', small, force: true });
}
const samples = (await pigg.readDataset(dataDir)).samples;
const bodies = samples.map((s) => ({ image: readFileSync(join(dataDir, s.image)).toString('base64'), instruction: s.instruction }));

// The server, as `pigg serve` in a child process.
async function startServer(batch) {
  const args = [CLI, 'serve', '--model', modelDir, '--adapters', adaptersDir, '--host', HOST, '--port', '0', '--max-batch', String(batch),
    '--max-queue', '100000', '--constrain', 'none', '--max-new-tokens', String(newTokens), '--device', device, '--dtype', dtype,
    '--min-pixels', String(pixels.minPixels), '--max-pixels', String(pixels.maxPixels), ...(threads ? ['--threads', threads] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk.toString()));
  const exited = new Promise((done) => child.on('exit', (code) => done(code)));
  const url = await new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`the server did not start in 10 min:\n${stderr}`)), 600_000);
    const poll = setInterval(() => {
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (match) {
        clearInterval(poll);
        clearTimeout(timer);
        done(match[1]);
      }
    }, 50);
    child.on('exit', (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      fail(new Error(`the server exited (${code}):\n${stderr}`));
    });
  });
  if (!url.startsWith(`http://${HOST}:`)) throw new Error(`refusing a non-loopback server address ${url}`);
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`the server exited with ${code}:\n${stderr}`);
    },
  };
}

/** Prometheus text → a series' value. */
async function scrape(url, series) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

/**
 * `count` requests from `concurrency` client loops, bounded by the time limit: request i goes to adapter
 * `adapterOf(i)`. Latencies of the answered requests, in seconds.
 */
async function load(url, { count, concurrency, adapterOf }) {
  const latencies = [];
  let next = 0;
  let failures = 0;
  let tokens = 0;
  const deadline = performance.now() + timeLimit;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count && performance.now() < deadline) {
      const i = next++;
      const t0 = performance.now();
      const response = await fetch(`${url}/v1/ground`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...bodies[i % bodies.length], user: adapterOf(i), max_new_tokens: newTokens }),
      });
      const body = await response.json();
      if (response.status !== 200) {
        failures++;
        if (failures <= 3) log(`request ${i}: ${response.status} ${JSON.stringify(body).slice(0, 200)}`);
        continue;
      }
      latencies.push((performance.now() - t0) / 1000);
      tokens += body.tokens;
    }
  }));
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const quantile = (q) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil(q * latencies.length) - 1))];
  if (latencies.length < count) log(`${count - latencies.length} of ${count} requests not answered (${failures} failed, the rest past the time limit)`);
  // Random weights decode to the budget; an answer that ended early would make requests unequal.
  if (tokens !== latencies.length * newTokens) log(`answers averaged ${(tokens / latencies.length).toFixed(1)} tokens, not the ${newTokens} of the budget`);
  return { answered: latencies.length, failures, seconds, perSecond: latencies.length / seconds, p50: quantile(0.5), p99: quantile(0.99) };
}

const rows = [];
const shape = `${config} ${device} ${dtype}, ${small ? '200×440 screenshots at 64-100k pixels' : '1080×2400 screenshots at PIGG\'s pixel limits'}, ${newTokens} new tokens, LoRA r ${rank}`;
const add = (setting, metric, unit, value) => rows.push({
  bench: 'serve', config: `${shape}, ${setting}`, metric, unit, pigg: value === null ? null : Number(value.toPrecision(4)), transformers: null, ratio: null,
});
const oneAdapter = () => adapterNames[0];
const mixed = (i) => adapterNames[i % adapterNames.length];
const top = Math.max(...concurrencies);
const throughput = {};

log(`max batch ${maxBatch}: ${requests} requests per phase at concurrency ${concurrencies.join(', ')}`);
let server = await startServer(maxBatch);
try {
  await load(server.url, { count: Math.max(4, maxBatch), concurrency: Math.min(maxBatch, 4), adapterOf: mixed }); // warm-up
  for (const concurrency of concurrencies) {
    for (const [label, adapterOf] of [['1 adapter', oneAdapter], [`${adapterCount} adapters`, mixed]]) {
      const r = await load(server.url, { count: requests, concurrency, adapterOf });
      log(`${label}, concurrency ${concurrency}: ${r.perSecond.toFixed(2)} req/s, p50 ${r.p50?.toFixed(3)} s, p99 ${r.p99?.toFixed(3)} s (${r.answered} answered)`);
      const setting = `max batch ${maxBatch}, ${label}, concurrency ${concurrency}, ${requests} requests`;
      add(setting, 'requests per second', 'req/s', r.perSecond);
      add(setting, 'p50 latency', 's', r.p50 ?? null);
      add(setting, 'p99 latency', 's', r.p99 ?? null);
      if (concurrency === top) throughput[label === '1 adapter' ? 'single' : 'mixed'] = r.perSecond;
    }
  }
  const before = await scrape(server.url, 'process_resident_memory_bytes');
  const r = await load(server.url, { count: rssRequests, concurrency: top, adapterOf: mixed });
  const after = await scrape(server.url, 'process_resident_memory_bytes');
  log(`RSS ${(before / 2 ** 20).toFixed(1)} MiB before ${r.answered} requests, ${(after / 2 ** 20).toFixed(1)} MiB after`);
  const setting = `max batch ${maxBatch}, ${adapterCount} adapters, concurrency ${top}, ${r.answered} requests`;
  add(setting, `server RSS before ${r.answered} requests`, 'MiB', before / 2 ** 20);
  add(setting, `server RSS after ${r.answered} requests`, 'MiB', after / 2 ** 20);
  add(setting, 'server RSS growth', 'MiB', (after - before) / 2 ** 20);
  add(setting, 'requests per second over the RSS run', 'req/s', r.perSecond);
  if (device.startsWith('cuda')) {
    for (const kind of ['allocated', 'reserved', 'peak']) {
      const bytes = await scrape(server.url, `pigg_device_memory_bytes{kind="${kind}"}`);
      if (bytes !== null) add(setting, `device memory ${kind}`, 'GiB', bytes / 2 ** 30);
    }
  }
} finally {
  await server.stop();
}

log(`max batch 1 (one request at a time): ${requests} requests at concurrency ${top}`);
server = await startServer(1);
try {
  await load(server.url, { count: 2, concurrency: 1, adapterOf: oneAdapter });
  const r = await load(server.url, { count: requests, concurrency: top, adapterOf: oneAdapter });
  log(`one at a time: ${r.perSecond.toFixed(2)} req/s, p50 ${r.p50?.toFixed(3)} s`);
  const setting = `max batch 1, 1 adapter, concurrency ${top}, ${requests} requests`;
  add(setting, 'requests per second', 'req/s', r.perSecond);
  add(setting, 'p50 latency', 's', r.p50 ?? null);
  add(setting, 'p99 latency', 's', r.p99 ?? null);
  throughput.alone = r.perSecond;
} finally {
  await server.stop();
}

const ratios = `concurrency ${top}, ${requests} requests`;
add(`${ratios}: max batch ${maxBatch}, ${adapterCount} adapters / 1 adapter`, 'mixed-adapter / single-adapter batched throughput (goal >= 0.8)', 'x', throughput.mixed / throughput.single);
add(`${ratios}: max batch ${maxBatch}, ${adapterCount} adapters / max batch 1, 1 adapter`, 'mixed-adapter batched / one-at-a-time throughput (goal >= 3 at batch 8)', 'x', throughput.mixed / throughput.alone);
log(`mixed/single ${(throughput.mixed / throughput.single).toFixed(2)}, mixed batched/one at a time ${(throughput.mixed / throughput.alone).toFixed(2)}`);

const file = writePiggOnlyResults({ bench: 'serve', name, outDir, device, torch: pigg.engineVersions().torch, rows });
log(`wrote ${file}`);
