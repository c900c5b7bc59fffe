// PIGG's experiments as library calls: evaluation of any checkpoint (vanilla or fine-tuned), the global
// fine-tune, and the personalized K-fold fine-tune. Results follow PIGG's layout and names; every run resumes.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Sample } from '../data/types.js';
import { kFolds } from '../data/folds.js';
import { listUsers, parseUserSpec, readDataset } from '../data/manifest.js';
import { overallSummary, userSummary, type FoldMetrics, type UserSummary } from '../data/metrics.js';
import { Qwen3VL, type LoadOptions } from '../engine/model.js';
import { ImagePool } from '../processor/image-pool.js';
import { QwenTokenizer } from '../processor/tokenizer.js';
import { DEFAULT_PROMPT, type PromptSettings } from '../processor/inputs.js';
import type { ConstrainOption } from '../grounding/grounder.js';
import { predict } from './predict.js';
import { PIGG_LORA, PRESETS, type PresetName, type TrainConfig } from '../training/presets.js';
import { summarize, type ResultSummary } from '../data/records.js';
import { readFinishedEval, writeEvalDir, writeJson } from './results.js';
import { isFinishedCheckpoint, trainRun, type TrainRunOptions } from './train.js';

export type ProgressEvent =
  | { kind: 'eval'; user: string; fold?: number; done: number; total: number }
  | { kind: 'train'; user?: string; fold?: number; step: number; totalSteps: number; loss: number; lr: number; gradNorm: number; tokensPerSecond: number }
  | { kind: 'log'; message: string };

export interface RunCommon {
  data: string;
  settings?: PromptSettings;
  load?: LoadOptions;
  /** Worker threads for image preprocessing (0: the JS thread); default defaultImageWorkers(). */
  imageWorkers?: number;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

/** A model folder must hold a Qwen3-VL config.json (the engine checks the rest when it loads). */
export function checkModelDir(dir: string): void {
  const config = join(dir, 'config.json');
  if (!existsSync(config)) throw new Error(`${dir} is not a model folder (no config.json)`);
  const modelType = (JSON.parse(readFileSync(config, 'utf8')) as { model_type?: string }).model_type;
  if (modelType !== 'qwen3_vl') throw new Error(`${config}: model_type is '${modelType}', pigg runs Qwen3-VL (model_type 'qwen3_vl')`);
}

/** The samples of each selected user, in manifest order; an unknown or empty user is an error. */
export async function usersSamples(dataDir: string, users: string | string[]): Promise<Map<string, Sample[]>> {
  if (!existsSync(dataDir)) throw new Error(`dataset ${dataDir} does not exist`);
  const dataset = await readDataset(dataDir);
  const known = listUsers(dataset.samples);
  const spec = Array.isArray(users) ? undefined : parseUserSpec(users);
  const wanted = spec ? known.filter((u) => spec.includes(u)) : (users as string[]);
  if (wanted.length === 0) throw new Error(`no user of ${dataDir} matches '${users}' (users: ${known.join(', ')})`);
  const out = new Map<string, Sample[]>();
  for (const user of wanted) {
    // Users come from the manifest's samples: a known user always has samples.
    if (!known.includes(user)) throw new Error(`user '${user}' has no samples in ${dataDir} (users: ${known.join(', ')})`);
    out.set(user, dataset.samples.filter((s) => s.user === user));
  }
  return out;
}

export interface EvalRunOptions extends RunCommon {
  model: string;
  users: string | string[];
  /** Experiment name: results go to <out>/<name>/user_<id>/. */
  name?: string;
  out?: string;
  batchSize?: number;
  maxNewTokens?: number;
  /** A LoRA adapter folder to attach to the model. */
  adapter?: string;
  /** Constrained decoding (GrounderSettings.constrain); default 'none' so PIGG's numbers reproduce. */
  constrain?: ConstrainOption;
}

export interface ExperimentResult {
  dir: string;
  users: Record<string, ResultSummary>;
  overall: ResultSummary;
}

/** Zero-shot or checkpoint evaluation: per user out.json / results.txt, then summary.json over all samples. */
export async function runEval(options: EvalRunOptions): Promise<ExperimentResult> {
  checkModelDir(options.model);
  const byUser = await usersSamples(options.data, options.users);
  const dir = join(options.out ?? 'eval_results', options.name ?? basename(options.model));
  const tokenizer = QwenTokenizer.fromDir(options.model);
  let model: Qwen3VL | undefined;
  const pool = new ImagePool(options.imageWorkers);
  const users: Record<string, ResultSummary> = {};
  const all = [];
  try {
    for (const [user, samples] of byUser) {
      const userDir = join(dir, `user_${user}`);
      let records = readFinishedEval(userDir);
      if (!records) {
        if (!model) {
          model = await Qwen3VL.load(options.model, options.load);
          if (options.adapter) await model.loadAdapter(options.adapter);
        }
        records = await predict(model, tokenizer, samples, options.data, {
          settings: options.settings ?? DEFAULT_PROMPT, batchSize: options.batchSize, maxNewTokens: options.maxNewTokens,
          constrain: options.constrain ?? 'none', signal: options.signal, images: pool.process, onProgress: (done, total) => options.onProgress?.({ kind: 'eval', user, done, total }),
        });
        await writeEvalDir(userDir, `${basename(dir)} user ${user}`, records);
      }
      users[user] = summarize(records);
      all.push(...records);
    }
  } finally {
    model?.dispose();
    await pool.close();
  }
  const overall = summarize(all);
  await writeJson(join(dir, 'summary.json'), { experiment: basename(dir), model: options.model, overall, users });
  return { dir, users, overall };
}

export interface TrainGlobalOptions extends RunCommon {
  model: string;
  users: string | string[];
  /** Where the fine-tuned checkpoint goes. */
  output: string;
  preset?: PresetName;
  lora?: boolean;
  overrides?: Partial<TrainConfig>;
  saveEvery?: number;
}

export function trainConfig(preset: PresetName, lora: boolean, overrides: Partial<TrainConfig> = {}): TrainConfig {
  return { ...PRESETS[preset], ...(lora ? { lora: PIGG_LORA } : {}), ...overrides };
}

function trainProgress(options: RunCommon, user?: string, fold?: number): TrainRunOptions['onStep'] {
  return (report) => options.onProgress?.({
    kind: 'train', user, fold, step: report.step, totalSteps: report.totalSteps, loss: report.loss, lr: report.learningRate,
    gradNorm: report.gradNorm, tokensPerSecond: report.inputTokens / report.seconds,
  });
}

/** PIGG's global fine-tune on many users' samples; writes a checkpoint transformers can load. */
export async function runTrainGlobal(options: TrainGlobalOptions): Promise<string> {
  checkModelDir(options.model);
  const byUser = await usersSamples(options.data, options.users);
  const samples = [...byUser.values()].flat();
  const config = trainConfig(options.preset ?? 'pigg-global', options.lora ?? false, options.overrides);
  const tokenizer = QwenTokenizer.fromDir(options.model);
  const pool = new ImagePool(options.imageWorkers);
  try {
    const model = await trainRun(tokenizer, {
      modelDir: options.model, samples, datasetDir: options.data, config, settings: options.settings ?? DEFAULT_PROMPT,
      load: options.load ?? {}, outDir: options.output, stateDir: `${options.output}.state`, logFile: `${options.output}.log.jsonl`,
      saveEvery: options.saveEvery, signal: options.signal, images: pool.process, onStep: trainProgress(options),
    });
    model.dispose();
  } finally {
    await pool.close();
  }
  return options.output;
}

export interface PersonalizeOptions extends RunCommon {
  /** The global model every fold starts from. */
  model: string;
  users: string | string[];
  k?: number;
  /** Only this fold (default: all). */
  fold?: number;
  seed?: number;
  out?: string;
  checkpoints?: string;
  preset?: PresetName;
  lora?: boolean;
  overrides?: Partial<TrainConfig>;
  batchSize?: number;
  maxNewTokens?: number;
  saveEvery?: number;
}

export interface PersonalizeResult {
  dir: string;
  users: Record<string, UserSummary & { folds: FoldMetrics[] }>;
  overall: ReturnType<typeof overallSummary>;
}

/**
 * PIGG's personalization: per user, PIGG's K folds of their samples; per fold, train on the other folds from the
 * global model, save, and evaluate the held-out fold at once. Finished folds are skipped; an unfinished one
 * resumes from its last saved state. Each fold's model is released before the next.
 */
export async function runPersonalize(options: PersonalizeOptions): Promise<PersonalizeResult> {
  const k = options.k ?? 3;
  if (options.fold !== undefined && (options.fold < 0 || options.fold >= k)) throw new Error(`--fold ${options.fold} must be in [0, ${k}) for k = ${k}`);
  checkModelDir(options.model);
  const byUser = await usersSamples(options.data, options.users);
  const config = trainConfig(options.preset ?? 'pigg-personal', options.lora ?? false, options.overrides);
  const dir = join(options.out ?? 'eval_results', 'personalized');
  const checkpoints = join(options.checkpoints ?? 'checkpoints', 'personalized');
  const tokenizer = QwenTokenizer.fromDir(options.model);
  const settings = options.settings ?? DEFAULT_PROMPT;
  const users: PersonalizeResult['users'] = {};
  const pool = new ImagePool(options.imageWorkers);
  try {
    for (const [user, samples] of byUser) {
      const folds = kFolds(samples.length, k, options.seed ?? 42);
      await writeJson(join(dir, `user_${user}`, 'folds.json'), { n: samples.length, k, seed: options.seed ?? 42, folds, ids: folds.map((f) => f.map((i) => samples[i].id)) });
      const foldMetrics: FoldMetrics[] = [];
      for (let fold = 0; fold < k; fold++) {
        const foldDir = join(dir, `user_${user}`, `fold_${fold}`);
        if (options.fold !== undefined && fold !== options.fold) {
          const existing = readFinishedEval(foldDir);
          if (existing) foldMetrics.push(summarize(existing));
          continue;
        }
        let records = readFinishedEval(foldDir);
        if (!records) {
          const test = folds[fold].map((i) => samples[i]);
          const train = folds.flatMap((indices, f) => (f === fold ? [] : indices.map((i) => samples[i])));
          const checkpoint = join(checkpoints, `user_${user}`, `fold_${fold}`);
          if (train.length === 0 || test.length === 0) throw new Error(`user '${user}' has ${samples.length} samples: too few for ${k} folds`);
          options.onProgress?.({ kind: 'log', message: `user ${user} fold ${fold}: ${isFinishedCheckpoint(checkpoint) ? 'evaluating saved' : 'training on'} ${train.length} samples, ${test.length} held out` });
          const model = await trainRun(tokenizer, {
            modelDir: options.model, samples: train, datasetDir: options.data, config, settings, load: options.load ?? {},
            outDir: checkpoint, stateDir: `${checkpoint}.state`, logFile: join(foldDir, 'train.log.jsonl'), saveEvery: options.saveEvery,
            signal: options.signal, images: pool.process, onStep: trainProgress(options, user, fold),
          });
          try {
            records = await predict(model, tokenizer, test, options.data, {
              settings, batchSize: options.batchSize, maxNewTokens: options.maxNewTokens, signal: options.signal, images: pool.process,
              onProgress: (done, total) => options.onProgress?.({ kind: 'eval', user, fold, done, total }),
            });
          } finally {
            model.dispose();
          }
          await writeEvalDir(foldDir, `personalized user ${user} fold ${fold}`, records);
          options.onProgress?.({ kind: 'log', message: `user ${user} fold ${fold} done; process memory ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB` });
        }
        foldMetrics.push(summarize(records));
      }
      const summary = { ...userSummary(user, foldMetrics), folds: foldMetrics };
      await writeJson(join(dir, `user_${user}`, `user_${user}_summary.json`), summary);
      users[user] = summary;
    }
  } finally {
    await pool.close();
  }
  const overall = overallSummary(Object.values(users));
  await writeJson(join(dir, 'summary.json'), { experiment: 'personalized', model: options.model, k, overall, users });
  return { dir, users, overall };
}
