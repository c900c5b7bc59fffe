// `pigg visualize`: draws ground truth, prediction and hit region for samples of one run's out.json.
import { dirname } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { visualizeRun } from '../report/visualize.js';
import { visualizeModel } from '../experiments/visualize.js';
import { PIGG_EXACT } from '../processor/inputs.js';
import { action, choiceOption, integerOption } from './common.js';

interface VisualizeCliOptions {
  results?: string;
  model?: string;
  device: string;
  dtype?: 'fp32' | 'bf16';
  maxPixels?: number;
  maxNewTokens?: number;
  data: string;
  user: string;
  samples?: number[];
  all?: boolean;
  out?: string;
  experiment?: string;
  fold?: number;
}

const sampleIndex = integerOption('--samples', 0);

function userOption(value: string): string {
  if (!/^[\w.-]+$/.test(value)) throw new InvalidArgumentError(`--user expects a user id like 1, got '${value}'`);
  return value;
}

export function register(program: Command): void {
  program
    .command('visualize')
    .description('draw ground truth (blue), prediction (red) and the hit region on screenshots of one run')
    .option('--results <dir>', 'results folder (<experiment>/user_<id>/[fold_<k>/]out.json)')
    .option('--model <dir>', 'instead of --results: predict the samples with this model first')
    .option('--device <device>', 'with --model: cpu, cuda or cuda:N', 'cpu')
    .option('--dtype <dtype>', 'with --model: fp32 or bf16', choiceOption('--dtype', ['fp32', 'bf16'] as const))
    .option('--max-pixels <n>', "with --model: image max_pixels (default pigg eval's, PIGG's effective 16777216)", integerOption('--max-pixels', 1))
    .option('--max-new-tokens <n>', "with --model: generation budget (default: the engine's)", integerOption('--max-new-tokens', 1))
    .requiredOption('--data <dataset>', 'dataset folder (dataset.json, manifest.jsonl, images/)')
    .requiredOption('--user <id>', 'user id', userOption)
    .option('--samples <index...>', "record indices in out.json (with --model: indices into the user's samples)", (v: string, prev: number[] = []) => [...prev, sampleIndex(v)])
    .option('--all', 'every record of the run')
    .option('--out <dir>', 'output folder (default <results>/visualizations/<experiment>[/fold_<k>])')
    .option('--experiment <name>', 'experiment folder under --results (needed when there are several)')
    .option('--fold <k>', 'held-out fold, for k-fold (personalized) results', integerOption('--fold', 0))
    .action(
      action(async (options: VisualizeCliOptions) => {
        if ((options.samples === undefined) === (options.all === undefined)) {
          throw new Error('give exactly one of --samples <index...> or --all');
        }
        if ((options.results === undefined) === (options.model === undefined)) throw new Error('give exactly one of --results <dir> or --model <dir>');
        const written = options.model !== undefined
          ? await visualizeModel({
            model: options.model, data: options.data, user: options.user, samples: options.samples, out: options.out, maxNewTokens: options.maxNewTokens,
            load: { device: options.device, dtype: options.dtype ?? (options.device.startsWith('cuda') ? 'bf16' : 'fp32') },
            settings: options.maxPixels === undefined ? undefined : { ...PIGG_EXACT, image: { ...PIGG_EXACT.image, maxPixels: options.maxPixels } },
          })
          : await visualizeRun({ ...options, results: options.results! });
        const where = written.length > 0 ? ` under ${dirname(written[0]!)}` : '';
        process.stdout.write(`wrote ${written.length} image${written.length === 1 ? '' : 's'}${where}\n`);
      }),
    );
}
