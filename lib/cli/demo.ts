// `pigg demo --out DIR`: the whole pipeline (synth -> eval -> train-global -> personalize -> results) on an
// embedded CPU-sized default.
import type { Command } from 'commander';
import { describeUserGain, runDemo } from '../experiments/demo.js';
import { action, integerOption } from './common.js';
import { progressReporter } from './progress.js';

function percent(value: unknown): string {
  return typeof value === 'number' ? `${(value * 100).toFixed(1)}%` : 'n/a';
}

function number(value: unknown): string {
  return typeof value === 'number' ? value.toFixed(1) : 'n/a';
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the whole pipeline on a synthetic dataset and a tiny random model (CPU, a few minutes)')
    .requiredOption('--out <dir>', 'output folder (data, models, checkpoints, eval_results)')
    .option('--threads <n>', 'CPU threads for the engine', integerOption('--threads', 1))
    .option('--seed <n>', 'seed of the synthetic users and the random model (default 7)', integerOption('--seed', 0))
    .action(action(async (flags: { out: string; threads?: number; seed?: number }) => {
      const progress = progressReporter();
      const started = Date.now();
      try {
        const summary = await runDemo({ out: flags.out, threads: flags.threads, seed: flags.seed, onProgress: progress.onProgress });
        progress.stop();
        const rows: Array<[string, Record<string, unknown>, string]> = [
          ['vanilla', summary.vanilla as Record<string, unknown>, ''],
          ['global', summary.global as Record<string, unknown>, ''],
          ['personalized', summary.personalized as Record<string, unknown>, 'overall_'],
        ];
        console.log(`demo finished in ${((Date.now() - started) / 1000).toFixed(0)} s; results in ${flags.out}/eval_results`);
        console.log(`  ${'experiment'.padEnd(14)} ${'accuracy'.padStart(9)} ${'mean L2'.padStart(9)} ${'median L2'.padStart(10)}`);
        for (const [name, metrics, prefix] of rows) {
          console.log(`  ${name.padEnd(14)} ${percent(metrics[`${prefix}accuracy`]).padStart(9)} ${number(metrics[`${prefix}mean_l2`]).padStart(9)} ${number(metrics[`${prefix}median_l2`]).padStart(10)}`);
        }
        for (const [user, result] of Object.entries(summary.users)) console.log(`  ${describeUserGain(user, result)}`);
      } finally {
        progress.stop();
      }
    }));
}
