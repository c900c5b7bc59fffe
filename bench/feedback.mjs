#!/usr/bin/env node
// Learning from feedback, measured: synthetic users with their own layouts send requests one after another; each
// request is answered (by the user's adapter once one is promoted, else the global model) and scored, then its true
// tap goes back as feedback. A Personalizer trains each user's LoRA beside inference after every N new taps and
// promotes it only when better on the user's most recent held-out taps.
//
//   node bench/feedback.mjs [--users 4] [--samples 96] [--test 32] [--global-users 6] [--global-samples 48]
//                           [--global-epochs 8] [--n 16] [--holdout 0.25] [--min-holdout 2] [--lr 1e-2] [--epochs 8]
//                           [--seed 7] [--block 16]
//                           [--latency-requests 24] [--threads N] [--name NAME] [--work DIR] [--out bench/results]
//                           [--png docs/feedback-accuracy.png]
//
// Measures:
//   - per user, after every N taps: the accuracy of what the user is served on --test screens of that user never
//     sent as feedback (the user's next samples), beside the global model on the same screens (the chart);
//   - the accuracy of the answers served during the stream itself (blocks of --block requests), beside the global
//     model's answers to the same requests;
//   - the time from the Nth feedback (the one that queued a job) to the promoted adapter, from decisions.jsonl;
//   - ground() latency while a training job runs beside it vs idle (one request at a time), and the training step
//     time alone vs beside inference.
// The stream waits for each job to finish before the next request (so the accuracy series does not depend on the
// machine's speed); the latency phase runs requests during a job on purpose.
// Writes <out>/feedback-<name>.json (series, decisions, latency) and the chart as a PNG.
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (path) => import(join(root, 'dist', path));
const { readDataset, writeDataset } = await dist('data/manifest.js');
const { writeSynthDataset } = await dist('data/synth/index.js');
const { initRandomModel } = await dist('engine/configs.js');
const { engineVersions } = await dist('engine/model.js');
const { runTrainGlobal } = await dist('experiments/runs.js');
const { scoreRecord } = await dist('data/records.js');
const { Grounder } = await dist('grounding/grounder.js');
const { Personalizer } = await dist('personalize/personalizer.js');
const { feedbackChartSvg } = await dist('report/feedback-chart.js');
const { writeSvgPng } = await dist('report/draw.js');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const int = (name, fallback) => {
  const v = Number(arg(name, String(fallback)));
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${arg(name)}`);
  return v;
};
const personalUsers = int('users', 4);
const samples = int('samples', 96);
const testSamples = int('test', 32);
const globalUsers = int('global-users', 6);
const globalSamples = int('global-samples', 48);
const globalEpochs = int('global-epochs', 8);
const minNew = int('n', 16);
const holdoutShare = Number(arg('holdout', '0.25'));
const minHoldout = int('min-holdout', 2);
const lr = Number(arg('lr', '1e-2'));
const epochs = int('epochs', 8);
const seed = int('seed', 7);
const block = int('block', 16);
const latencyRequests = int('latency-requests', 24);
const threads = arg('threads') === undefined ? undefined : int('threads', 1);
const name = arg('name', 'cpu-tiny');
const work = resolve(arg('work', join(tmpdir(), 'pigg-feedback-bench')));
const outDir = resolve(arg('out', join(root, 'bench', 'results')));
const png = resolve(arg('png', join(root, 'docs', 'feedback-accuracy.png')));
const log = (message) => console.error(`[feedback] ${message}`);

const IMAGE = { minPixels: 65536, maxPixels: 100352 };
const settings = { style: 'pigg', image: IMAGE };
const load = { device: 'cpu', dtype: 'fp32', threads };
const MAX_NEW = 64;

// Data: personal users 1..U stream feedback; the others train the global model. Feedback taps carry no referring
// label, so the global model is trained without them too.
const key = `u${personalUsers}x${samples + testSamples}-g${globalUsers}x${globalSamples}-s${seed}`;
const synth = join(work, `synth-${key}`);
const data = join(work, `data-${key}`);
if (!existsSync(join(data, 'dataset.json'))) {
  log(`synthesising ${personalUsers + globalUsers} users`);
  rmSync(synth, { recursive: true, force: true });
  rmSync(data, { recursive: true, force: true });
  await writeSynthDataset(synth, { users: personalUsers + globalUsers, personal: personalUsers, samplesPerUser: Math.max(samples + testSamples, globalSamples), seed, small: true });
  const { info, samples: all } = await readDataset(synth);
  mkdirSync(data, { recursive: true });
  symlinkSync(join(synth, 'images'), join(data, 'images'));
  const keep = all.filter((s) => Number(s.episode) < (Number(s.user) <= personalUsers ? samples + testSamples : globalSamples));
  await writeDataset(data, info, keep.map((s) => ({ ...s, referring: null })));
}
const all = (await readDataset(data)).samples;
// Each user's first --samples are the stream (sent as feedback), the next --test the user's unseen screens.
const streams = Array.from({ length: personalUsers }, (_, i) => all.filter((s) => s.user === String(i + 1)).slice(0, samples));
const tests = Array.from({ length: personalUsers }, (_, i) => all.filter((s) => s.user === String(i + 1)).slice(samples, samples + testSamples));

const base = join(work, `base-${seed}`);
if (!existsSync(join(base, 'config.json'))) await initRandomModel('tiny', base, { seed });
// The global model depends only on the global users (ids after the personal ones) and their samples.
const global = join(work, `global-p${personalUsers}-g${globalUsers}x${globalSamples}-s${seed}-e${globalEpochs}`);
let globalSeconds = null;
if (!existsSync(join(global, 'config.json'))) {
  log(`global fine-tune on users ${personalUsers + 1}-${personalUsers + globalUsers} (${globalEpochs} epochs)`);
  const start = performance.now();
  await runTrainGlobal({
    data, settings, load, model: base, users: `${personalUsers + 1}-${personalUsers + globalUsers}`, output: global, imageWorkers: 0,
    overrides: { learningRate: 3e-3, epochs: globalEpochs, gradientAccumulation: 1, warmupSteps: 5, gradientCheckpointing: false },
  });
  globalSeconds = (performance.now() - start) / 1000;
}
const globalLog = readFileSync(`${global}.log.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const lastLosses = globalLog.slice(-20).map((l) => l.loss);
const globalLoss = lastLosses.reduce((a, b) => a + b, 0) / lastLosses.length;
log(`global model: ${globalLog.length} steps, mean loss of the last 20 ${globalLoss.toFixed(3)}`);

const feedbackDir = join(work, `feedback-${name}-${Date.now()}`);
const grounder = await Grounder.load(global, { ...load, image: IMAGE, maxNewTokens: MAX_NEW, imageWorkers: 0, constrain: 'pigg' });
const steps = [];
const personalizer = await Personalizer.open({
  dir: feedbackDir, grounder, minNewSamples: minNew, holdout: holdoutShare, minHoldout,
  overrides: { learningRate: lr, epochs, gradientAccumulation: 1, warmupSteps: 2, weightDecay: 0, gradientCheckpointing: false },
  lora: { rank: 8, alpha: 32, dropout: 0 },
  onEvent: (event) => {
    if (event.type === 'step') steps.push({ user: event.user, seconds: event.seconds, phase });
    if (event.type === 'decision') {
      const d = event.decision;
      log(`user ${d.user}: ${d.decision} v${d.version ?? '-'} (candidate ${fmt(d.candidate)} vs ${d.previous === null ? 'global' : `v${d.previous}`} ${fmt(d.baseline)}; ${d.samples?.trained} trained, ${d.samples?.holdout} held out; ${d.seconds?.toFixed(1)} s)`);
    }
  },
});
const fmt = (m) => (m ? `${(m.accuracy * 100).toFixed(0)}%/${m.mean_l2.toFixed(0)}` : '-');
let phase = 'stream';

/** acc@140 of the user's adapter (or the global model: null) on the user's unseen screens. */
async function testAccuracy(u, adapter) {
  const results = await grounder.groundSamples(tests[u], data, { user: adapter });
  return mean(results.map((r, i) => (scoreRecord(tests[u][i], r).hit ? 1 : 0)));
}
const globalTest = [];
for (let u = 0; u < personalUsers; u++) globalTest.push(await testAccuracy(u, null));
const curve = streams.map(() => []);
async function measureCurve(taps) {
  for (let u = 0; u < personalUsers; u++) {
    const user = streams[u][0].user;
    const adapter = personalizer.adapterFor(user);
    const status = await personalizer.status(user);
    curve[u].push({ taps, version: status.version, served: adapter === null ? globalTest[u] : await testAccuracy(u, adapter), global: globalTest[u] });
  }
}
await measureCurve(0);

// The stream: round-robin over the users, one request each per round.
const records = [];
const streamStart = performance.now();
for (let i = 0; i < samples; i++) {
  for (const stream of streams) {
    const sample = stream[i];
    if (!sample) continue;
    const user = sample.user;
    const image = join(data, sample.image);
    const adapter = personalizer.adapterFor(user);
    const served = await grounder.ground(image, sample.instruction, { user: adapter });
    const globalAnswer = adapter === null ? served : await grounder.ground(image, sample.instruction);
    const score = (result) => scoreRecord(sample, result);
    const s = score(served);
    const g = score(globalAnswer);
    const status = await personalizer.status(user);
    records.push({ user, index: i, version: status.version, served: { hit: s.hit, l2: s.l2 }, global: { hit: g.hit, l2: g.l2 }, kind: sample.meta?.kind ?? null });
    await personalizer.feedback({ user, image, instruction: sample.instruction, tap: sample.target });
  }
  await personalizer.idle();
  if ((i + 1) % minNew === 0 || i + 1 === samples) await measureCurve(i + 1);
}
const streamDecisions = personalizer.decisions().length;
const streamSeconds = (performance.now() - streamStart) / 1000;

// Latency: one request at a time, idle, then while a job trains beside it.
phase = 'latency';
const probe = streams.flatMap((s) => s.slice(0, Math.ceil(latencyRequests / streams.length)));
async function latencies(count, keepGoing) {
  const out = [];
  for (let i = 0; out.length < count && keepGoing(); i++) {
    const sample = probe[i % probe.length];
    const start = performance.now();
    await grounder.ground(join(data, sample.image), sample.instruction, { user: personalizer.adapterFor(sample.user) });
    if (keepGoing()) out.push((performance.now() - start) / 1000);
  }
  return out;
}
await latencies(3, () => true); // warm
const idle = await latencies(latencyRequests, () => true);
personalizer.train(streams[0][0].user);
while (personalizer.running?.phase !== 'training') await new Promise((r) => setTimeout(r, 5));
phase = 'beside';
const beside = await latencies(latencyRequests, () => personalizer.running?.phase === 'training');
phase = 'after';
await personalizer.idle();
await personalizer.close();
await grounder[Symbol.asyncDispose]();

function quantile(values, q) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (pos - lo);
}
function mean(values) {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}
function round(v, d = 4) {
  return v === null || v === undefined ? null : Math.round(v * 10 ** d) / 10 ** d;
}

const decisions = personalizer.decisions();
const duringStream = decisions.slice(0, streamDecisions);
const series = streams.map((stream) => {
  const user = stream[0].user;
  const mine = records.filter((r) => r.user === user);
  const blocks = [];
  for (let from = 0; from < mine.length; from += block) {
    const chunk = mine.slice(from, from + block);
    blocks.push({ from, to: from + chunk.length, served: mean(chunk.map((r) => (r.served.hit ? 1 : 0))), global: mean(chunk.map((r) => (r.global.hit ? 1 : 0))), versions: [...new Set(chunk.map((r) => r.version))] });
  }
  const promotions = duringStream.filter((d) => d.user === user && d.decision === 'promoted').map((d) => d.samples.total);
  return { user, blocks, promotions, requests: mine };
});
const meanCurve = curve[0].map((p, k) => ({ taps: p.taps, served: mean(curve.map((c) => c[k].served)), global: mean(curve.map((c) => c[k].global)) }));
const promoted = duringStream.filter((d) => d.decision === 'promoted');
const stepSeconds = (which) => steps.filter((s) => s.phase === which).map((s) => s.seconds);
const result = {
  command: `node bench/feedback.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  device: `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()} threads, ${Math.round(totalmem() / 2 ** 30)} GiB`,
  date: new Date().toISOString(),
  versions: { torch: engineVersions?.().torch ?? null, pigg: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version },
  config: {
    model: 'tiny (random init, then a global fine-tune)', personalUsers, samplesPerUser: samples, globalUsers, globalSamples, globalEpochs,
    globalSteps: globalLog.length, globalFinalLoss: round(globalLoss), globalSeconds: round(globalSeconds, 1), seed, minNewSamples: minNew,
    holdout: personalizer.holdout, minHoldout: personalizer.minHoldout, from: personalizer.from,
    training: { learningRate: lr, epochs, batch: '1x1', lora: 'r8 a32 dropout 0' }, image: IMAGE, maxNewTokens: MAX_NEW, constrain: 'pigg', block, testSamples,
  },
  /** Per user, after every N taps: acc@140 of what the user is served on the user's --test unseen screens. */
  curve: [
    ...curve.map((points, u) => ({ user: streams[u][0].user, points: points.map((p) => ({ ...p, served: round(p.served), global: round(p.global) })) })),
    { user: 'mean', points: meanCurve.map((p) => ({ ...p, served: round(p.served), global: round(p.global) })) },
  ],
  stream: { seconds: round(streamSeconds, 1), requests: records.length },
  accuracy: series.map(({ user, blocks }) => ({
    user,
    blocks: blocks.map((b) => ({ ...b, served: round(b.served), global: round(b.global) })),
    servedOverall: round(mean(records.filter((r) => r.user === user).map((r) => (r.served.hit ? 1 : 0)))),
    globalOverall: round(mean(records.filter((r) => r.user === user).map((r) => (r.global.hit ? 1 : 0)))),
    lastBlock: blocks.at(-1) && { served: round(blocks.at(-1).served), global: round(blocks.at(-1).global) },
  })),
  decisions: decisions.map((d) => ({
    user: d.user, decision: d.decision, version: d.version, previous: d.previous, samples: d.samples, candidate: d.candidate, baseline: d.baseline,
    firstLoss: round(d.training?.first_loss ?? null), lastLoss: round(d.training?.last_loss ?? null), trainSeconds: round(d.train_seconds ?? null, 2), evalSeconds: round(d.eval_seconds ?? null, 2), seconds: round(d.seconds ?? null, 2), steps: d.training?.steps,
  })),
  promotion: {
    count: promoted.length,
    /** From the feedback that queued the job to the adapter served (s). */
    secondsFromNthFeedback: { median: round(quantile(promoted.map((d) => d.seconds), 0.5), 2), min: round(quantile(promoted.map((d) => d.seconds), 0), 2), max: round(quantile(promoted.map((d) => d.seconds), 1), 2) },
    perStepSeconds: round(quantile(stepSeconds('stream'), 0.5), 4),
  },
  latency: {
    idle: { n: idle.length, p50: round(quantile(idle, 0.5)), p95: round(quantile(idle, 0.95)), mean: round(mean(idle)) },
    besideTraining: { n: beside.length, p50: round(quantile(beside, 0.5)), p95: round(quantile(beside, 0.95)), mean: round(mean(beside)) },
    trainStep: { alone: round(quantile(stepSeconds('stream'), 0.5)), besideInference: round(quantile(stepSeconds('beside'), 0.5)), nBeside: stepSeconds('beside').length },
  },
  series: series.map(({ user, requests }) => ({ user, requests })),
};
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `feedback-${name}.json`);
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
mkdirSync(dirname(png), { recursive: true });
await writeSvgPng(feedbackChartSvg([
  ...curve.map((points, u) => ({ user: streams[u][0].user, points, promotions: series[u].promotions })),
  { user: 'mean', points: meanCurve, promotions: [] },
]), png);
log(`wrote ${file} and ${png}`);
for (const a of result.accuracy) log(`user ${a.user}: served ${(a.servedOverall * 100).toFixed(1)}% vs global ${(a.globalOverall * 100).toFixed(1)}% over the stream; last block ${(a.lastBlock.served * 100).toFixed(1)}% vs ${(a.lastBlock.global * 100).toFixed(1)}%`);
for (const c of result.curve) log(`${c.user === 'mean' ? 'mean' : `user ${c.user}`} on unseen screens: ${c.points.map((p) => `${p.taps}:${(p.served * 100).toFixed(0)}%`).join(' ')} (global ${(c.points[0].global * 100).toFixed(0)}%)`);
log(`promotions: ${promoted.length}, from the Nth feedback to the promoted adapter: median ${result.promotion.secondsFromNthFeedback.median} s`);
log(`latency p50 idle ${result.latency.idle.p50} s, beside training ${result.latency.besideTraining.p50} s (n ${beside.length}); train step ${result.latency.trainStep.alone} s alone, ${result.latency.trainStep.besideInference} s beside inference`);
rmSync(feedbackDir, { recursive: true, force: true });
