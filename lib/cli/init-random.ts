// `pigg init-random --config tiny|2b|4b|8b --out DIR`: a Qwen3-VL checkpoint with random weights and the real
// tokenizer, for tests, demos and benchmarks.
import type { Command } from 'commander';
import { CONFIG_NAMES, initRandomModel } from '../engine/configs.js';
import { action, choiceOption, integerOption } from './common.js';

export function register(program: Command): void {
  program
    .command('init-random')
    .description('write a Qwen3-VL checkpoint folder with random weights and the real tokenizer files')
    .requiredOption('--config <name>', `model shape: ${CONFIG_NAMES.join(', ')}`, choiceOption('--config', CONFIG_NAMES))
    .requiredOption('--out <dir>', 'output folder')
    .option('--dtype <dtype>', 'stored dtype: bf16 or fp32', choiceOption('--dtype', ['bf16', 'fp32'] as const), 'bf16')
    .option('--device <device>', 'where to generate the weights (cpu, cuda)', 'cpu')
    .option('--seed <n>', 'random seed', integerOption('--seed'), 0)
    .action(action(async (options: { config: (typeof CONFIG_NAMES)[number]; out: string; dtype: 'bf16' | 'fp32'; device: string; seed: number }) => {
      await initRandomModel(options.config, options.out, options);
      console.log(`wrote a random ${options.config} Qwen3-VL checkpoint to ${options.out}`);
    }));
}
