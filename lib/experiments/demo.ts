// The whole PIGG pipeline on an embedded default that runs on a laptop CPU in a few minutes: a synthetic
// dataset (users with their own layouts and preferences), a tiny random Qwen3-VL with the real tokenizer,
// vanilla evaluation, the global fine-tune, the personalized K-fold fine-tune, the evaluation of each and the
// HTML report.
// Learning rates are raised over PIGG's presets so that a randomly initialised model learns in a few steps.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeSynthDataset } from '../data/synth.js';
import { initRandomModel } from '../engine/configs.js';
import type { PromptSettings } from './inputs.js';
import { runEval, runPersonalize, runTrainGlobal, type ProgressEvent } from './runs.js';
import { writeJson } from './results.js';
import { writeReport } from '../report/html.js';

export interface DemoOptions {
  out: string;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

export const DEMO = {
  data: { users: 6, personal: 2, samplesPerUser: 24, seed: 7, small: true },
  personalUsers: ['1', '2'] as string[],
  globalUsers: '3-6',
  k: 3,
  maxNewTokens: 40,
  // 256*28*28 pixels: about 200 image tokens per 540x1200 screen, to keep the CPU demo quick.
  settings: { style: 'pigg', image: { minPixels: 65536, maxPixels: 200704 } } satisfies PromptSettings,
  // Measured on 2 cores: 8 global epochs take the tiny model from 0% to ~25% accuracy on the personal users.
  global: { learningRate: 3e-3, epochs: 8, gradientAccumulation: 2, warmupSteps: 5 },
  personal: { learningRate: 2e-4, epochs: 6, gradientAccumulation: 2, warmupSteps: 2 },
} as const;

export interface DemoSummary {
  vanilla: unknown;
  global: unknown;
  personalized: unknown;
}

export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const { out, signal, onProgress } = options;
  const log = (message: string) => onProgress?.({ kind: 'log', message });
  const data = join(out, 'data');
  const base = join(out, 'models', 'base');
  const global = join(out, 'models', 'global');
  const results = join(out, 'eval_results');
  const common = { data, settings: DEMO.settings, load: { device: 'cpu', dtype: 'fp32' as const, threads: options.threads }, signal, onProgress };
  if (!existsSync(join(data, 'dataset.json'))) {
    log(`synthesising ${DEMO.data.users} users x ${DEMO.data.samplesPerUser} screens into ${data}`);
    await writeSynthDataset(data, DEMO.data);
  }
  if (!existsSync(join(base, 'config.json'))) {
    log(`writing a tiny random Qwen3-VL to ${base}`);
    await initRandomModel('tiny', base, { seed: DEMO.data.seed });
  }
  log('vanilla evaluation');
  const vanilla = await runEval({ ...common, model: base, users: DEMO.personalUsers, name: 'vanilla', out: results, maxNewTokens: DEMO.maxNewTokens, batchSize: 4 });
  log(`global fine-tune on users ${DEMO.globalUsers}`);
  await runTrainGlobal({ ...common, model: base, users: DEMO.globalUsers, output: global, overrides: DEMO.global, saveEvery: 20 });
  log('global evaluation');
  const globalResult = await runEval({ ...common, model: global, users: DEMO.personalUsers, name: 'global', out: results, maxNewTokens: DEMO.maxNewTokens, batchSize: 4 });
  log(`personalized ${DEMO.k}-fold fine-tune of users ${DEMO.personalUsers.join(', ')}`);
  const personalized = await runPersonalize({
    ...common, model: global, users: DEMO.personalUsers, k: DEMO.k, out: results, checkpoints: join(out, 'checkpoints'),
    overrides: DEMO.personal, maxNewTokens: DEMO.maxNewTokens, batchSize: 4, saveEvery: 10,
  });
  const summary = { vanilla: vanilla.overall, global: globalResult.overall, personalized: personalized.overall };
  await writeJson(join(results, 'demo_summary.json'), summary);
  const report = await writeReport(results);
  log(`report: ${report.html}`);
  return summary;
}
