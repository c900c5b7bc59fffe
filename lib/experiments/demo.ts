// The whole PIGG pipeline on an embedded default that runs on a laptop CPU in a few minutes: a synthetic
// dataset (users with their own layouts and preferences), a tiny random Qwen3-VL with the real tokenizer,
// vanilla evaluation, the global fine-tune, the personalized K-fold fine-tune, the evaluation of each and the
// HTML report.
//
// What the demo can show, and why its settings are what they are (the experiments that decided them are in the
// README, "The demo: personalization pays off"):
//  - The tiny model's vision tower is random and frozen, so it cannot read a label on the screen. What it can learn
//    is where a given instruction lands: for the global model, where it lands on average over the training users;
//    for a personal model, where it lands for this user (their layout, favourite apps and contacts, tap bias).
//  - So the demo keeps the samples whose target depends on the user: the intent-level instructions ("Get me online")
//    and the icon-only ones ("Open my music app", unlabelled dock icons). Explicit ones ("Tap the Wi-Fi tile") need
//    the label read off the screen, which this model cannot do for anyone.
//  - A personal model gains only where the user's held-out instruction also occurs in their training folds, so the
//    users have enough samples (96 screens, about 57 kept, 38 to train on per fold) for most instructions to recur.
//  - The personal fine-tune needs many steps at a high learning rate, all weights training: 12 epochs (108-132
//    steps per fold) gain on every seed measured, 8 epochs lose on one; LoRA or frozen embeddings gain nothing in
//    the same time. The global fine-tune needs only to learn the answer format and the average, so it is short.
//    PIGG's presets are unchanged; these are the demo's own.
//  - Images are scaled to 10 tokens: the random vision tower reads nothing from more pixels. A step's cost is then
//    the prompt and the output layer over the 151,936-token vocabulary.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sample } from '../data/types.js';
import { readDataset, writeDataset } from '../data/manifest.js';
import { resolveSynthConfig, synthSamples, writeSynthDataset, type SynthKind } from '../data/synth/index.js';
import { initRandomModel } from '../engine/configs.js';
import type { PromptSettings } from '../processor/inputs.js';
import type { PresetName, TrainConfig } from '../training/presets.js';
import { runEval, runPersonalize, runTrainGlobal, type ProgressEvent } from './runs.js';
import { writeJson } from './results.js';
import { writeFileAtomic } from '../atomic.js';
import { writeReport } from '../report/html.js';

export interface DemoConfig {
  data: { users: number; personal: number; samplesPerUser: number; width: number; height: number };
  /** Sample kinds the demo keeps (see the header). */
  kinds: SynthKind[];
  /** Seed of the synthetic data and of the random model. */
  seed: number;
  personalUsers: string[];
  globalUsers: string;
  k: number;
  maxNewTokens: number;
  batchSize: number;
  settings: PromptSettings;
  global: { preset: PresetName; overrides?: Partial<TrainConfig> };
  personal: { preset: PresetName; overrides?: Partial<TrainConfig> };
}

export const DEMO: DemoConfig = {
  // Screens at a quarter of the phone's 1080x2400: the model sees them at 10 tokens anyway, and resizing a smaller
  // PNG costs a third of the time on the two cores the engine also uses.
  data: { users: 6, personal: 2, samplesPerUser: 96, width: 270, height: 600 },
  kinds: ['intent', 'icon_only'],
  seed: 7,
  personalUsers: ['1', '2'],
  globalUsers: '3-6',
  k: 3,
  // The longest answer of the demo data is 25 tokens; PIGG's labels stop before <|im_end|>, so every answer runs
  // to the budget.
  maxNewTokens: 32,
  batchSize: 8,
  // At most 128x128 pixels: 10 image tokens per screen (Pillow's resize). Greedy decoding and the robust parser, not
  // the PIGG-exact defaults of the experiment commands: the demo's figures were measured with them.
  settings: { style: 'pigg', image: { minPixels: 4096, maxPixels: 16384, resampler: 'pillow' }, parser: 'robust', decoding: 'greedy' },
  global: { preset: 'demo-global' },
  personal: { preset: 'demo-personal' },
};

/** What the demo writes under its --out folder. */
const DEMO_FOLDERS = ['data', 'models', 'checkpoints', 'eval_results'];

export interface DemoOptions {
  out: string;
  threads?: number;
  /** Data and model seed (default DEMO.seed). */
  seed?: number;
  /** Changes to DEMO (e.g. a smaller run); recorded in <out>/demo_config.json. */
  config?: Partial<DemoConfig>;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

export interface DemoUserResult {
  global: number | null;
  personalized: number | null;
  /** personalized - global accuracy (fractions). */
  gain: number | null;
}

export interface DemoSummary {
  vanilla: unknown;
  global: unknown;
  personalized: unknown;
  /** Per personal user: the global model's accuracy on all their samples and the personalized k-fold average. */
  users: Record<string, DemoUserResult>;
  seed: number;
}

/** "user 1: global 11.9% -> personalized 33.1% (+21.2 points)", as the demo logs and prints it. */
export function describeUserGain(user: string, { global, personalized, gain }: DemoUserResult): string {
  const pct = (v: number | null) => (v === null ? 'n/a' : `${(v * 100).toFixed(1)}%`);
  const points = gain === null ? 'n/a' : `${gain >= 0 ? '+' : ''}${(gain * 100).toFixed(1)} points`;
  return `user ${user}: global ${pct(global)} -> personalized ${pct(personalized)} (${points})`;
}

/** Whether the demo keeps a synthetic sample (its kind is one of config.kinds). */
export function keepsSample(config: Pick<DemoConfig, 'kinds'>, sample: Sample): boolean {
  return (config.kinds as string[]).includes(String(sample.meta?.kind));
}

/** The demo's samples without writing anything (the manifest writeDemoData leaves), in manifest order. */
export function demoSamples(config: Pick<DemoConfig, 'data' | 'kinds' | 'seed'>): Sample[] {
  const synth = resolveSynthConfig({ ...config.data, seed: config.seed });
  return [...synthSamples(synth)].map((item) => item.sample).filter((sample) => keepsSample(config, sample));
}

/** The demo's dataset: the synthetic users, keeping only `kinds` (manifest, counts and images). */
async function writeDemoData(dir: string, config: DemoConfig): Promise<void> {
  const info = await writeSynthDataset(dir, { ...config.data, seed: config.seed, force: true });
  const { samples } = await readDataset(dir);
  const keep = (s: Sample) => keepsSample(config, s);
  await Promise.all(samples.filter((s) => !keep(s)).map((s) => rm(join(dir, s.image), { force: true })));
  const kept = samples.filter(keep);
  const counts: Record<string, number> = { samples: kept.length };
  for (const kind of config.kinds) counts[kind] = kept.filter((s) => s.meta?.kind === kind).length;
  // dataset.json is written last: its `demo` field marks the filtered dataset as complete.
  await writeDataset(dir, { ...info, counts, notes: `${info.notes ?? ''} pigg demo: ${config.kinds.join(' and ')} samples only.`.trim(), demo: { kinds: config.kinds } } as typeof info, kept);
}

function isDemoData(dir: string, config: DemoConfig): boolean {
  const file = join(dir, 'dataset.json');
  if (!existsSync(file)) return false;
  const info = JSON.parse(readFileSync(file, 'utf8')) as { demo?: { kinds?: string[] } };
  return JSON.stringify(info.demo?.kinds) === JSON.stringify(config.kinds);
}

/**
 * The settings a run was made with, in <out>/demo_config.json: a run with the same settings resumes; one made with
 * other settings (or by an earlier pigg, which wrote no demo_config.json) is replaced, the demo's own folders only.
 */
async function claimOut(out: string, config: DemoConfig, log: (message: string) => void): Promise<void> {
  const file = join(out, 'demo_config.json');
  const text = `${JSON.stringify(config, null, 2)}\n`;
  if (existsSync(file) && readFileSync(file, 'utf8') === text) return;
  const stale = DEMO_FOLDERS.filter((name) => existsSync(join(out, name)));
  if (stale.length > 0) {
    log(`${out} holds a demo run made with other settings; starting over (removing ${stale.join(', ')})`);
    for (const name of stale) await rm(join(out, name), { recursive: true, force: true });
  }
  await mkdir(out, { recursive: true });
  await writeFileAtomic(file, text);
}

export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const { out, signal, onProgress } = options;
  const config: DemoConfig = { ...DEMO, ...options.config, ...(options.seed !== undefined ? { seed: options.seed } : {}) };
  const log = (message: string) => onProgress?.({ kind: 'log', message });
  await claimOut(out, config, log);
  const data = join(out, 'data');
  const base = join(out, 'models', 'base');
  const global = join(out, 'models', 'global');
  const results = join(out, 'eval_results');
  const common = { data, settings: config.settings, load: { device: 'cpu', dtype: 'fp32' as const, threads: options.threads }, signal, onProgress };
  const evalCommon = { ...common, users: config.personalUsers, out: results, maxNewTokens: config.maxNewTokens, batchSize: config.batchSize };
  if (!isDemoData(data, config)) {
    log(`synthesising ${config.data.users} users x ${config.data.samplesPerUser} screens (seed ${config.seed}) into ${data}, keeping the ${config.kinds.join(' and ')} samples`);
    await writeDemoData(data, config);
  }
  if (!existsSync(join(base, 'config.json'))) {
    log(`writing a tiny random Qwen3-VL to ${base}`);
    await initRandomModel('tiny', base, { seed: config.seed });
  }
  log('vanilla evaluation');
  const vanilla = await runEval({ ...evalCommon, model: base, name: 'vanilla' });
  log(`global fine-tune on users ${config.globalUsers} (preset ${config.global.preset})`);
  await runTrainGlobal({ ...common, model: base, users: config.globalUsers, output: global, preset: config.global.preset, overrides: config.global.overrides, saveEvery: 100 });
  log('global evaluation');
  const globalResult = await runEval({ ...evalCommon, model: global, name: 'global' });
  log(`personalized ${config.k}-fold fine-tune of users ${config.personalUsers.join(', ')} (preset ${config.personal.preset})`);
  const personalized = await runPersonalize({
    ...evalCommon, model: global, k: config.k, checkpoints: join(out, 'checkpoints'),
    preset: config.personal.preset, overrides: config.personal.overrides, saveEvery: 50,
  });
  const users: Record<string, DemoUserResult> = {};
  for (const user of config.personalUsers) {
    const g = globalResult.users[user]?.accuracy ?? null;
    const p = personalized.users[user]?.avg_accuracy ?? null;
    users[user] = { global: g, personalized: p, gain: g === null || p === null ? null : p - g };
    log(describeUserGain(user, users[user]));
  }
  const summary: DemoSummary = { vanilla: vanilla.overall, global: globalResult.overall, personalized: personalized.overall, users, seed: config.seed };
  await writeJson(join(results, 'demo_summary.json'), summary);
  const report = await writeReport(results);
  log(`report: ${report.html}`);
  return summary;
}
