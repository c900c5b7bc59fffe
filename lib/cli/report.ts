// `pigg report`: one self-contained HTML page comparing every experiment under a results folder.
import type { Command } from 'commander';
import { writeReport } from '../report/html.js';
import { action } from './common.js';

export function register(program: Command): void {
  program
    .command('report')
    .description('write an HTML report (tables, charts, summary checks) of every experiment under a results folder')
    .argument('<results>', 'results folder (<experiment>/user_<id>/[fold_<k>/]out.json)')
    .option('--out <file>', 'HTML file to write (default <results>/report.html); chart PNGs go beside it')
    .action(
      action(async (results: string, options: { out?: string }) => {
        const written = await writeReport(results, options.out);
        const { flags, experiments } = written.report;
        const warn = flags.length > 0 ? `, ${flags.length} disagreement${flags.length === 1 ? '' : 's'} flagged` : '';
        process.stdout.write(`wrote ${written.html} (${experiments.length} experiments${warn}) and ${written.pngs.join(', ')}\n`);
      }),
    );
}
