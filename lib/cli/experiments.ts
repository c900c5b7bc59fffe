// `pigg eval`, `pigg train-global`, `pigg personalize`: PIGG's experiments from the command line.
import type { Command } from 'commander';
import { ANSWER_STYLES, PARSERS, type AnswerStyle, type ParserName } from '../data/parse.js';
import { PIGG_EFFECTIVE_PIXELS, PIGG_PIXELS, RESAMPLERS, type Resampler } from '../processor/image.js';
import { defaultImageWorkers } from '../processor/image-pool.js';
import type { LoadOptions } from '../engine/model.js';
import { DECODINGS, PIGG_EXACT, type PromptSettings } from '../processor/inputs.js';
import { PRESET_NAMES, type PresetName, type TrainConfig } from '../training/presets.js';
import { runEval, runPersonalize, runTrainGlobal } from '../experiments/runs.js';
import { CONSTRAIN_OPTIONS, type ConstrainOption } from '../grounding/grounder.js';
import { action, choiceOption, integerOption } from './common.js';
import { progressReporter } from './progress.js';

interface EngineFlags {
  device: string;
  dtype?: 'fp32' | 'bf16';
  threads?: number;
  minPixels: number;
  maxPixels: number;
  resampler: Resampler;
  style: AnswerStyle;
  imageWorkers: number;
  // Evaluation (eval, personalize)
  parser?: ParserName;
  decoding?: (typeof DECODINGS)[number];
  decodingSeed?: number;
}

function numberOption(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isFinite(n) || value.trim() === '') throw new Error(`${flag} expects a number, got '${value}'`);
    return n;
  };
}

function engineFlags(command: Command): Command {
  return command
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .option('--dtype <dtype>', 'compute dtype (default: bf16 on cuda, fp32 on cpu)', choiceOption('--dtype', ['fp32', 'bf16'] as const))
    .option('--threads <n>', 'CPU threads for the engine', integerOption('--threads', 1))
    .option('--min-pixels <n>', 'image min_pixels', integerOption('--min-pixels', 1), PIGG_EFFECTIVE_PIXELS.minPixels)
    .option('--max-pixels <n>', `image max_pixels (default ${PIGG_EFFECTIVE_PIXELS.maxPixels}, what PIGG's processor applied; PIGG asked for 1280*28*28 = ${PIGG_PIXELS.maxPixels})`,
      integerOption('--max-pixels', 1), PIGG_EFFECTIVE_PIXELS.maxPixels)
    .option('--resampler <name>', "image resize: torchvision (PIGG's fast processor), pillow (the slow one) or sharp", choiceOption('--resampler', RESAMPLERS), PIGG_EXACT.image.resampler)
    .option('--style <style>', 'prompt and answer style', choiceOption('--style', ANSWER_STYLES), 'pigg')
    .option('--image-workers <n>', 'worker threads for image preprocessing (0: the main thread)', integerOption('--image-workers'), defaultImageWorkers());
}

function evalFlags(command: Command): Command {
  return command
    .option('--parser <name>', "answer parser: pigg (PIGG's parse_inference) or robust (pigg's: JSON points, click(), box centres, clamped to 0-1000)",
      choiceOption('--parser', PARSERS), PIGG_EXACT.parser)
    .option('--decoding <mode>', "generation-config (sample as the model's generation_config.json says, as PIGG did) or greedy",
      choiceOption('--decoding', DECODINGS), PIGG_EXACT.decoding)
    .option('--decoding-seed <n>', 'seed of sampled decoding (the i-th sample of a run gets seed + i)', integerOption('--decoding-seed'), PIGG_EXACT.seed);
}

function trainFlags(command: Command): Command {
  return command
    .option('--lora', "LoRA (PIGG's r 8, alpha 32, dropout 0.1) instead of a full fine-tune")
    .option('--lr <lr>', 'learning rate (overrides the preset)', numberOption('--lr'))
    .option('--epochs <n>', 'epochs (overrides the preset)', integerOption('--epochs', 1))
    .option('--grad-accum <n>', 'gradient accumulation steps (overrides the preset)', integerOption('--grad-accum', 1))
    .option('--warmup <n>', 'warmup steps (overrides the preset)', integerOption('--warmup'))
    .option('--update-mode <mode>', 'bf16 updates: master, kahan, stochastic, or pure (as PIGG)', choiceOption('--update-mode', ['master', 'kahan', 'stochastic', 'pure'] as const))
    .option('--labels <mode>', "label convention: pigg (answer only) or qwen (answer + <|im_end|>)", choiceOption('--labels', ['pigg', 'qwen'] as const))
    .option('--save-every <n>', 'save resumable state every N optimizer steps', integerOption('--save-every', 1), 50);
}

interface TrainFlags {
  lora?: boolean;
  lr?: number;
  epochs?: number;
  gradAccum?: number;
  warmup?: number;
  updateMode?: TrainConfig['updateMode'];
  labels?: TrainConfig['labelConvention'];
  saveEvery: number;
}

function overrides(flags: TrainFlags): Partial<TrainConfig> {
  const out: Partial<TrainConfig> = {};
  if (flags.lr !== undefined) out.learningRate = flags.lr;
  if (flags.epochs !== undefined) out.epochs = flags.epochs;
  if (flags.gradAccum !== undefined) out.gradientAccumulation = flags.gradAccum;
  if (flags.warmup !== undefined) out.warmupSteps = flags.warmup;
  if (flags.updateMode !== undefined) out.updateMode = flags.updateMode;
  if (flags.labels !== undefined) out.labelConvention = flags.labels;
  return out;
}

function engine(flags: EngineFlags): { load: LoadOptions; settings: PromptSettings; imageWorkers: number } {
  const dtype = flags.dtype ?? (flags.device.startsWith('cuda') ? 'bf16' : 'fp32');
  return {
    load: { device: flags.device, dtype, threads: flags.threads },
    imageWorkers: flags.imageWorkers,
    settings: {
      style: flags.style, image: { minPixels: flags.minPixels, maxPixels: flags.maxPixels, resampler: flags.resampler },
      parser: flags.parser, decoding: flags.decoding, seed: flags.decodingSeed,
    },
  };
}

function printTable(title: string, rows: Array<[string, object]>): void {
  console.log(title);
  for (const [name, row] of rows) {
    const metrics = row as Record<string, unknown>;
    const value = (key: string, scale = 1) => (typeof metrics[key] === 'number' ? ((metrics[key] as number) * scale).toFixed(2) : 'n/a');
    const acc = 'accuracy' in metrics ? value('accuracy', 100) : value('avg_accuracy', 100);
    const mean = 'mean_l2' in metrics ? value('mean_l2') : value('avg_mean_l2');
    const median = 'median_l2' in metrics ? value('median_l2') : value('avg_median_l2');
    console.log(`  ${name.padEnd(12)} accuracy ${acc.padStart(6)}%  mean L2 ${mean.padStart(8)}  median L2 ${median.padStart(8)}`);
  }
}

export function register(program: Command): void {
  evalFlags(engineFlags(program
    .command('eval')
    .description('evaluate a model (zero-shot or any checkpoint) on users of a dataset')
    .requiredOption('--model <dir>', 'model folder')
    .requiredOption('--data <dir>', 'dataset folder (dataset.json + manifest.jsonl)')
    .requiredOption('--users <ids...>', 'users: ids and ranges, e.g. 1-10 or 1 2 3')
    .option('--name <name>', 'experiment name (default: the model folder name)')
    .option('--out <dir>', 'results root', 'eval_results')
    .option('--adapter <dir>', 'a LoRA adapter folder to attach')
    .option('--batch <n>', 'samples per batch', integerOption('--batch', 1), 1)
    .option('--max-new-tokens <n>', "generation budget (default: the engine's)", integerOption('--max-new-tokens', 1))
    .option('--constrain <grammar>', "constrained decoding: auto (the grammar of --style), pigg, qwen-json, point (a bare (x, y)) or none; "
      + "none, eval's default, decodes freely as PIGG did (the Grounder and pigg serve default to auto)", choiceOption('--constrain', CONSTRAIN_OPTIONS), 'none')))
    .action(action(async (flags: EngineFlags & { model: string; data: string; users: string[]; name?: string; out: string; adapter?: string; batch: number; maxNewTokens?: number; constrain: ConstrainOption }) => {
      const progress = progressReporter();
      try {
        const result = await runEval({
          model: flags.model, data: flags.data, users: flags.users.join(' '), name: flags.name, out: flags.out, adapter: flags.adapter,
          batchSize: flags.batch, maxNewTokens: flags.maxNewTokens, constrain: flags.constrain, ...engine(flags), onProgress: progress.onProgress,
        });
        progress.stop();
        printTable(`results in ${result.dir}`, [...Object.entries(result.users).map(([u, m]): [string, object] => [`user ${u}`, m]), ['overall', result.overall]]);
      } finally {
        progress.stop();
      }
    }));

  trainFlags(engineFlags(program
    .command('train-global')
    .description("PIGG's global fine-tune (vision tower and aligner frozen) on many users")
    .requiredOption('--model <dir>', 'model folder to start from')
    .requiredOption('--data <dir>', 'dataset folder')
    .requiredOption('--users <ids...>', 'training users, e.g. 11-83')
    .requiredOption('--output <dir>', 'where the fine-tuned checkpoint goes')
    .option('--preset <name>', `training preset: ${PRESET_NAMES.join(', ')}`, choiceOption('--preset', PRESET_NAMES), 'pigg-global')))
    .action(action(async (flags: EngineFlags & TrainFlags & { model: string; data: string; users: string[]; output: string; preset: PresetName }) => {
      const progress = progressReporter();
      try {
        await runTrainGlobal({
          model: flags.model, data: flags.data, users: flags.users.join(' '), output: flags.output, preset: flags.preset, lora: flags.lora,
          overrides: overrides(flags), saveEvery: flags.saveEvery, ...engine(flags), onProgress: progress.onProgress,
        });
        progress.stop();
        console.log(`wrote ${flags.output}`);
      } finally {
        progress.stop();
      }
    }));

  evalFlags(trainFlags(engineFlags(program
    .command('personalize')
    .description("PIGG's personalized K-fold fine-tune from a global model, evaluating each held-out fold")
    .requiredOption('--model <dir>', 'global model folder every fold starts from')
    .requiredOption('--data <dir>', 'dataset folder')
    .requiredOption('--users <ids...>', 'users, e.g. 1 2 3 or 1-10')
    .option('--k <n>', 'number of folds', integerOption('--k', 2), 3)
    .option('--fold <n>', 'run only this fold', integerOption('--fold'))
    .option('--seed <n>', "fold seed (PIGG's is 42)", integerOption('--seed'), 42)
    .option('--out <dir>', 'results root', 'eval_results')
    .option('--checkpoints <dir>', 'checkpoints root', 'checkpoints')
    .option('--preset <name>', `training preset: ${PRESET_NAMES.join(', ')}`, choiceOption('--preset', PRESET_NAMES), 'pigg-personal')
    .option('--batch <n>', 'evaluation batch size', integerOption('--batch', 1), 1)
    .option('--max-new-tokens <n>', "generation budget (default: the engine's)", integerOption('--max-new-tokens', 1)))))
    .action(action(async (flags: EngineFlags & TrainFlags & { model: string; data: string; users: string[]; k: number; fold?: number; seed: number; out: string; checkpoints: string; preset: PresetName; batch: number; maxNewTokens: number }) => {
      const progress = progressReporter();
      try {
        const result = await runPersonalize({
          model: flags.model, data: flags.data, users: flags.users.join(' '), k: flags.k, fold: flags.fold, seed: flags.seed, out: flags.out,
          checkpoints: flags.checkpoints, preset: flags.preset, lora: flags.lora, overrides: overrides(flags), batchSize: flags.batch,
          maxNewTokens: flags.maxNewTokens, saveEvery: flags.saveEvery, ...engine(flags), onProgress: progress.onProgress,
        });
        progress.stop();
        printTable(`results in ${result.dir}`, [...Object.entries(result.users).map(([u, m]): [string, object] => [`user ${u}`, m]), ['overall', { avg_accuracy: result.overall.overall_accuracy, avg_mean_l2: result.overall.overall_mean_l2, avg_median_l2: result.overall.overall_median_l2 }]]);
      } finally {
        progress.stop();
      }
    }));
}
