// `pigg visualize`: draws ground truth, prediction and hit region for samples of one run's out.json.
import { dirname } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { visualizeRun } from '../report/visualize.js';
import { action, integerOption } from './common.js';

interface VisualizeCliOptions {
  results: string;
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
    .requiredOption('--results <dir>', 'results folder (<experiment>/user_<id>/[fold_<k>/]out.json)')
    .requiredOption('--data <dataset>', 'dataset folder (dataset.json, manifest.jsonl, images/)')
    .requiredOption('--user <id>', 'user id', userOption)
    .option('--samples <index...>', 'record indices in out.json', (v: string, prev: number[] = []) => [...prev, sampleIndex(v)])
    .option('--all', 'every record of the run')
    .option('--out <dir>', 'output folder (default <results>/visualizations/<experiment>[/fold_<k>])')
    .option('--experiment <name>', 'experiment folder under --results (needed when there are several)')
    .option('--fold <k>', 'held-out fold, for k-fold (personalized) results', integerOption('--fold', 0))
    .action(
      action(async (options: VisualizeCliOptions) => {
        if ((options.samples === undefined) === (options.all === undefined)) {
          throw new Error('give exactly one of --samples <index...> or --all');
        }
        const written = await visualizeRun(options);
        const where = written.length > 0 ? ` under ${dirname(written[0]!)}` : '';
        process.stdout.write(`wrote ${written.length} image${written.length === 1 ? '' : 's'}${where}\n`);
      }),
    );
}
