#!/usr/bin/env node
// `pigg serve` as a hostile client sees it, over loopback only (127.0.0.1): each case of issue #16 sent to the CLI
// server (tiny random model, keys set, --feedback), with what it answered, how slow /health was while the case ran
// (polled one request after the other), the server's peak RSS over the case and the files it wrote.
//
//   node bench/attack.mjs [--name NAME] [--work DIR] [--out bench/results] [--image-workers N]
//
// Every loop is bounded (a fixed number of requests; /health polled until the case settles, at most 60 s). The
// poller answers once before each case starts (not counted), so a case of a few ms may see no poll.
// Writes <out>/attack-<name>.json: {command, device, date, versions, load_average: {start, end} (1/5/15-minute, of
// the box: other jobs on it slow /health too), cases: [{case, status, health_max_ms, health_polls, rss_peak_mib,
// files_written, seconds}]}.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pigg = await import(join(root, 'dist', 'index.js'));
const { initRandomModel } = await import(join(root, 'dist', 'engine', 'configs.js'));
const { readSafetensors, writeSafetensors } = await import(join(root, 'dist', 'safetensors.js'));
const CLI = join(root, 'dist', 'cli', 'index.js');
const HOST = '127.0.0.1';
const KEY = 'client-key';
const ADMIN = 'admin-key';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const name = arg('name', 'local');
const work = resolve(arg('work', join(tmpdir(), 'pigg-attack-bench')));
const outDir = resolve(arg('out', join(root, 'bench', 'results')));
const imageWorkers = arg('image-workers', '1');
const log = (message) => console.error(`[attack] ${message}`);
const loadAtStart = loadavg();

rmSync(work, { recursive: true, force: true });
const modelDir = join(work, 'tiny');
const adaptersDir = join(work, 'adapters');
const feedbackDir = join(work, 'feedback');
mkdirSync(adaptersDir, { recursive: true });
await initRandomModel('tiny', modelDir, { seed: 0 });

/** A rank-2 q_proj adapter from a fresh trainer, every weight set to `value` (NaN: the poisoned one). */
async function adapter(dir, value) {
  const model = await pigg.Qwen3VL.load(modelDir, { device: 'cpu', dtype: 'fp32' });
  const trainer = await model.createTrainer({ learningRate: 0, totalSteps: 1, lora: { rank: 2, alpha: 4, dropout: 0, targets: ['q_proj'] } });
  await trainer.save(dir);
  trainer.dispose();
  model.dispose();
  if (value === undefined) return;
  const file = join(dir, 'adapter_model.safetensors');
  const tensors = readSafetensors(file);
  for (const t of tensors.values()) t.data.fill(value);
  writeSafetensors(file, tensors);
}
await adapter(join(adaptersDir, 'team'));
await adapter(join(adaptersDir, 'nan'), Number.NaN);

const screenshot = await sharp({ create: { width: 200, height: 440, channels: 3, background: '#5080c0' } }).png().toBuffer();
/** A PNG header declaring width x height over a small image's data. */
function declaring(png, width, height) {
  const out = Buffer.from(png);
  out.writeUInt32BE(width, 16);
  out.writeUInt32BE(height, 20);
  out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
  return out;
}
const uri = (bytes, type = 'image/png') => `data:${type};base64,${bytes.toString('base64')}`;

const args = [CLI, 'serve', '--model', modelDir, '--adapters', adaptersDir, '--host', HOST, '--port', '0', '--feedback', feedbackDir,
  '--min-pixels', '65536', '--max-pixels', '100352', '--max-new-tokens', '64', '--image-workers', imageWorkers, '--train-after', '1000',
  '--api-key', KEY, '--admin-key', ADMIN];
// The NaN adapter is not in --adapters (the server would refuse to start); it is loaded over HTTP below.
rmSync(join(adaptersDir, 'nan', 'adapter_config.json'));
const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
let stderr = '';
const url = await new Promise((done, fail) => {
  child.stderr.on('data', (chunk) => {
    stderr += chunk.toString();
    const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
    if (match) done(match[1]);
  });
  child.on('exit', (code) => fail(new Error(`pigg serve exited ${code}: ${stderr}`)));
});
if (!url.startsWith(`http://${HOST}:`)) throw new Error(`refusing a non-loopback server address ${url}`);
writeFileSync(join(adaptersDir, 'nan', 'adapter_config.json'), readFileSync(join(adaptersDir, 'team', 'adapter_config.json')));

function rssMiB() {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}
function files(dir) {
  let n = 0;
  try {
    for (const entry of readdirSync(dir, { withFileTypes: true })) n += entry.isDirectory() ? files(join(dir, entry.name)) : 1;
  } catch {
    // not there yet
  }
  return n;
}

/** One raw request (any method, headers, body); resolves to its status. */
function send(method, path, { body, headers = {}, key = KEY } = {}) {
  return new Promise((done) => {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) || typeof body === 'string' ? body : JSON.stringify(body);
    const req = httpRequest(`${url}${path}`, {
      method,
      headers: { ...(payload === undefined ? {} : { 'content-type': 'application/json' }), ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode));
    });
    req.on('error', (error) => done(`error ${error.code}`));
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/**
 * /health polled one request after the other on a worker thread (its own event loop: the bench's writes of large
 * bodies do not delay it) until `stop` is set; resolves to the slowest answer in ms and the number of polls.
 */
function pollHealth(stop) {
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const http = require('node:http');
    const flag = new Int32Array(workerData.stop);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let max = 0, polls = 0;
    const deadline = Date.now() + 60000;
    const poll = () => {
      if (Atomics.load(flag, 0) === 1 || Date.now() > deadline) return parentPort.postMessage({ max, polls });
      const t = performance.now();
      http.get(workerData.url + '/health', { agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if (polls++ === 0) parentPort.postMessage('ready'); // the first answer (worker start-up) is not counted
          else max = Math.max(max, performance.now() - t);
          poll();
        });
      }).on('error', () => parentPort.postMessage({ max: -1, polls }));
    };
    poll();`, { eval: true, workerData: { url, stop: stop.buffer } });
  const ready = new Promise((done) => worker.once('message', done));
  const result = ready.then(() => new Promise((done) => worker.once('message', (m) => worker.terminate().then(() => done({ ...m, polls: m.polls - 1 })))));
  return { ready, result };
}

const results = [];
/** Runs `requests` (a function returning promises of statuses) while /health is polled and the RSS sampled. */
async function attack(label, requests) {
  const filesBefore = files(feedbackDir);
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const health = pollHealth(stop);
  await health.ready;
  let settled = false;
  let rss = rssMiB();
  const started = performance.now();
  const run = Promise.all(requests()).finally(() => (settled = true));
  while (!settled) {
    rss = Math.max(rss, rssMiB());
    await new Promise((done) => setTimeout(done, 5));
  }
  const statuses = await run;
  Atomics.store(stop, 0, 1);
  const { max, polls } = await health.result;
  const row = {
    case: label, status: statuses.join(','), health_max_ms: Math.round(max * 10) / 10, health_polls: polls,
    rss_peak_mib: Math.round(rss), files_written: files(feedbackDir) - filesBefore, seconds: Math.round((performance.now() - started) / 10) / 100,
  };
  results.push(row);
  log(`${label}: ${row.status} (health max ${row.health_max_ms} ms over ${polls} polls, RSS peak ${row.rss_peak_mib} MiB, ${row.files_written} files, ${row.seconds} s)`);
}

const tap = (extra = {}) => ({ user: 'alice', image: uri(screenshot), instruction: 'Open settings', tap: { x: 10, y: 10 }, ...extra });
const ground = (extra = {}) => ({ image: uri(screenshot), instruction: 'Open settings', ...extra });
const huge = declaring(screenshot, 16383, 16383);
const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="16000" height="16000"><rect width="16000" height="16000"/></svg>');
const strip = await sharp({ create: { width: 4020, height: 20, channels: 3, background: '#808080' } }).png().toBuffer();
const largest = await sharp({ create: { width: 4096, height: 4096, channels: 3, background: '#3060a0' } }).png().toBuffer();
// Noise does not compress: a 2500x2500 PNG of ~18.8 MB, near --max-image-bytes (20 MiB), a ~25 MB body.
const noisy = Buffer.alloc(2500 * 2500 * 3);
for (let i = 0, x = 1; i < noisy.length; i++) noisy[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
const heaviest = await sharp(noisy, { raw: { width: 2500, height: 2500, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
const nested = `${'['.repeat(14_000_000)}${']'.repeat(14_000_000)}`;

await attack('a legitimate tap (baseline)', () => [send('POST', '/v1/feedback', { body: tap() })]);
await attack('a legitimate ground (baseline)', () => [send('POST', '/v1/ground', { body: ground() })]);
await attack('no API key: GET /v1/models', () => [send('GET', '/v1/models', { key: null })]);
await attack('web page: text/plain POST /v1/feedback (no preflight)', () => [send('POST', '/v1/feedback', { body: JSON.stringify(tap()), key: null, headers: { 'content-type': 'text/plain' } })]);
await attack('the same with a client key', () => [send('POST', '/v1/feedback', { body: JSON.stringify(tap()), headers: { 'content-type': 'text/plain' } })]);
await attack('DNS rebinding: Host attacker.example', () => [send('GET', '/v1/models', { headers: { host: 'attacker.example' } })]);
await attack('client key: POST /v1/adapters', () => [send('POST', '/v1/adapters', { body: { name: 'x', path: 'team' } })]);
await attack('admin: adapter path outside the roots (/etc)', () => [send('POST', '/v1/adapters', { body: { name: 'x', path: '/etc' }, key: ADMIN })]);
await attack('admin: NaN adapter', () => [send('POST', '/v1/adapters', { body: { name: 'poison', path: 'nan' }, key: ADMIN })]);
await attack('feedback user named like an adapter (team)', () => [send('POST', '/v1/feedback', { body: tap({ user: 'team' }) })]);
await attack('admin: adapter named like a feedback user (alice)', () => [send('POST', '/v1/adapters', { body: { name: 'alice', path: 'team' }, key: ADMIN })]);
await attack('PNG of 1 KB declaring 16383x16383', () => [send('POST', '/v1/ground', { body: ground({ image: uri(huge) }) })]);
await attack('3 such PNGs at once', () => [0, 1, 2].map(() => send('POST', '/v1/ground', { body: ground({ image: uri(huge) }) })));
await attack('the same PNG as feedback', () => [send('POST', '/v1/feedback', { body: tap({ image: uri(huge) }) })]);
await attack('SVG declaring 16000x16000 (214 bytes)', () => [send('POST', '/v1/ground', { body: ground({ image: uri(svg, 'image/svg+xml') }) })]);
await attack('aspect ratio 201 (4020x20) as feedback', () => [send('POST', '/v1/feedback', { body: tap({ image: uri(strip) }) })]);
await attack('instruction with <|image_pad|> on /v1/ground', () => [send('POST', '/v1/ground', { body: ground({ instruction: 'Open <|image_pad|>' }) })]);
await attack('instruction with <|image_pad|> as feedback', () => [send('POST', '/v1/feedback', { body: tap({ instruction: 'Open <|image_pad|>' }) })]);
await attack('28 MB nested JSON', () => [send('POST', '/v1/ground', { body: nested })]);
await attack('100 KB body on /v1/adapters', () => [send('POST', '/v1/adapters', { body: { name: 'x', path: 'y'.repeat(100_000) }, key: ADMIN })]);
await attack('the largest image allowed (4096x4096)', () => [send('POST', '/v1/ground', { body: ground({ image: uri(largest) }) })]);
await attack(`the heaviest body allowed (a ${(heaviest.length / 2 ** 20).toFixed(1)} MiB noise PNG)`, () => [send('POST', '/v1/ground', { body: ground({ image: uri(heaviest) }) })]);

child.kill('SIGTERM');
await new Promise((done) => child.once('exit', done));

const result = {
  command: `node bench/attack.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  device: `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()} threads, ${Math.round(totalmem() / 2 ** 30)} GiB`,
  date: new Date().toISOString(),
  versions: { pigg: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version },
  image_workers: Number(imageWorkers),
  load_average: { start: loadAtStart.map((l) => Math.round(l * 100) / 100), end: loadavg().map((l) => Math.round(l * 100) / 100) },
  cases: results,
};
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `attack-${name}.json`);
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
log(`wrote ${file}`);
rmSync(work, { recursive: true, force: true });
