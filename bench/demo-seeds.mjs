#!/usr/bin/env node
// The demo's personalization gain over several seeds: `pigg demo` (synthetic users, a tiny random Qwen3-VL, global
// fine-tune, personalized k-fold) once per seed, each in its own folder, one after another. Per seed: the wall
// time, global vs personalized acc@140 overall and per personal user, and the gain in points.
//
//   node bench/demo-seeds.mjs [--seeds 7,1,2,3] [--work runs/demo-seeds] [--threads N] [--name NAME] [--out bench/results]
//                             [--config '{"personal":{"preset":"demo-personal","overrides":{"epochs":8}}}']
//
// --config is a partial DemoConfig (lib/experiments/demo.ts) applied to every seed, for the experiments the README
// records. A seed whose folder already holds a finished run with the same settings is not run again (pigg demo
// resumes), so its seconds then read as the time of the resumed run.
// Writes <out>/demo-seeds-<name>.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { runDemo, DEMO } = await import(join(root, 'dist', 'experiments', 'demo.js'));
const { engineVersions } = await import(join(root, 'dist', 'engine', 'model.js'));
const { trainConfig } = await import(join(root, 'dist', 'experiments', 'runs.js'));

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const seeds = arg('seeds', '7,1,2,3').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--seeds expects comma-separated integers, got '${s}'`);
  return n;
});
const work = resolve(arg('work', join(root, 'runs', 'demo-seeds')));
const threads = arg('threads') === undefined ? undefined : Number(arg('threads'));
const name = arg('name', 'cpu');
const outDir = resolve(arg('out', join(root, 'bench', 'results')));
const config = JSON.parse(arg('config', '{}'));
const demoConfig = { ...DEMO, ...config };

const round = (v, digits = 4) => (v === null || v === undefined ? null : Number(v.toFixed(digits)));
const runs = [];
for (const seed of seeds) {
  const started = performance.now();
  const summary = await runDemo({
    out: join(work, `seed-${seed}`), seed, threads, config,
    onProgress: (e) => { if (e.kind === 'log') console.log(`seed ${seed} ${((performance.now() - started) / 1000).toFixed(0)} s: ${e.message}`); },
  });
  const seconds = (performance.now() - started) / 1000;
  const global = summary.global.accuracy;
  const personalized = summary.personalized.overall_accuracy;
  const users = Object.entries(summary.users).map(([user, u]) => ({ user, global: round(u.global), personalized: round(u.personalized), gain: round(u.gain) }));
  runs.push({ seed, seconds: round(seconds, 1), vanilla: round(summary.vanilla.accuracy), global: round(global), personalized: round(personalized), gain: round(personalized - global), users });
  console.log(`seed ${seed}: ${seconds.toFixed(0)} s; global ${(global * 100).toFixed(1)}% -> personalized ${(personalized * 100).toFixed(1)}%; per user ${users.map((u) => `${u.user} ${u.gain >= 0 ? '+' : ''}${(u.gain * 100).toFixed(1)}`).join(', ')} points`);
}
const gains = runs.flatMap((r) => r.users.map((u) => u.gain));
const result = {
  command: `node bench/demo-seeds.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  device: `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()} threads, ${Math.round(totalmem() / 2 ** 30)} GiB`,
  date: new Date().toISOString(),
  versions: { torch: engineVersions?.().torch ?? null, pigg: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version },
  config: demoConfig,
  /** The schedules the config's presets and overrides resolve to. */
  training: Object.fromEntries(['global', 'personal'].map((stage) => [stage, trainConfig(demoConfig[stage].preset, false, demoConfig[stage].overrides)])),
  runs,
  summary: {
    seeds: runs.length,
    maxSeconds: round(Math.max(...runs.map((r) => r.seconds)), 1),
    minGain: round(Math.min(...runs.map((r) => r.gain))),
    minUserGain: round(Math.min(...gains)),
    meanGain: round(runs.reduce((a, r) => a + r.gain, 0) / runs.length),
  },
};
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `demo-seeds-${name}.json`);
writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${file}`);
