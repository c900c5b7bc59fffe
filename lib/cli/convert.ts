// `pigg convert-fingertip`: FingerTip-20K raw tree -> canonical dataset directory (+ report.json).
import type { Command } from 'commander';
import { writeFingertipDataset, type InstructionMode } from '../data/fingertip.js';
import { action, choiceOption } from './common.js';

interface ConvertOptions {
  out: string;
  longClick?: boolean;
  copyImages?: boolean;
  instruction: InstructionMode;
}

export function register(program: Command): void {
  program
    .command('convert-fingertip')
    .description('convert a FingerTip-20K download into a gg-sample/1 dataset (manifest.jsonl, dataset.json, images/, report.json)')
    .argument('<src>', 'FingerTip-20K root holding one folder per user')
    .requiredOption('--out <dir>', 'output dataset directory')
    .option('--long-click', 'also make samples from long_click actions')
    .option('--copy-images', 'copy screenshots instead of symlinking them')
    .option(
      '--instruction <mode>',
      "'goal' (intentDescription) or 'referring' (点击「content」)",
      choiceOption('--instruction', ['goal', 'referring'] as const),
      'goal',
    )
    .action(
      action(async (src: string, options: ConvertOptions) => {
        const report = await writeFingertipDataset(src, options.out, {
          longClick: options.longClick ?? false,
          copyImages: options.copyImages ?? false,
          instruction: options.instruction,
        });
        const skipped = Object.values(report.skipped_actions).reduce((a, b) => a + b, 0);
        const incomplete = report.episodes - report.episodes_complete;
        process.stdout.write(
          `converted ${report.samples} samples from ${report.users} users, ${report.episodes_complete} episodes ` +
            `(${incomplete} incomplete episodes, ${report.bad_json_lines} bad lines, ${skipped} skipped actions) -> ${report.out}\n`,
        );
      }),
    );
}
