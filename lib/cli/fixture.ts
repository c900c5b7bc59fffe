// `pigg fixture run|check <case-dir>`: run a golden-fixture case from its inputs alone, and compare with its
// recorded outputs under the fixture README's tolerances.
import type { Command } from 'commander';
import { writeSafetensors } from '../safetensors.js';
import { checkFixtureCase, runFixtureCase, type CheckRow } from '../engine/fixture.js';
import { action, choiceOption } from './common.js';

interface EngineFlags {
  dtype: 'fp32' | 'bf16';
  device: string;
  model?: string;
  gradientCheckpointing?: boolean;
}

function engineRunOptions(options: EngineFlags) {
  const { dtype, device, model, gradientCheckpointing } = options;
  return { dtype, device, model, gradientCheckpointing };
}

function formatRow(row: CheckRow): string {
  const diff = Number.isNaN(row.diff) ? '-' : row.diff.toExponential(2);
  const tolerance = row.kind === 'exact' ? 'exact' : row.kind === 'info' ? 'info' : row.tolerance.toExponential(2);
  return `${row.ok ? 'ok  ' : 'FAIL'}  ${row.name.padEnd(46)} ${diff.padStart(10)}  ${tolerance.padStart(9)}${row.note ? `  ${row.note}` : ''}`;
}

export function register(program: Command): void {
  const fixture = program.command('fixture').description('golden fixture cases (qwen3vl-tiny layout)');
  const engineOptions = (command: Command) => command
    .option('--dtype <dtype>', 'compute dtype: fp32 or bf16', choiceOption('--dtype', ['fp32', 'bf16'] as const), 'fp32')
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .option('--model <dir>', "model folder to use instead of the case's own")
    .option('--gradient-checkpointing', 'compute the grad.* outputs with per-layer gradient checkpointing');

  engineOptions(fixture
    .command('run')
    .description('run a case from its inputs and write every output tensor')
    .argument('<case-dir>', 'case folder (case.json, inputs.safetensors)')
    .requiredOption('--out <file>', 'output .safetensors file'))
    .action(action(async (caseDir: string, options: EngineFlags & { out: string }) => {
      const outputs = await runFixtureCase(caseDir, engineRunOptions(options));
      writeSafetensors(options.out, outputs);
      console.log(`wrote ${Object.keys(outputs).length} tensors to ${options.out}`);
    }));

  engineOptions(fixture
    .command('check')
    .description('run a case and compare with its outputs.safetensors')
    .argument('<case-dir>', 'case folder (case.json, inputs.safetensors, outputs.safetensors)'))
    .action(action(async (caseDir: string, options: EngineFlags) => {
      const rows = await checkFixtureCase(caseDir, engineRunOptions(options));
      console.log(`${'ok?'.padEnd(4)}  ${'tensor'.padEnd(46)} ${'max diff'.padStart(10)}  ${'tolerance'.padStart(9)}`);
      for (const row of rows) console.log(formatRow(row));
      const failed = rows.filter((row) => !row.ok).length;
      console.log(`${rows.length - failed} passed, ${failed} failed`);
      if (failed > 0) process.exitCode = 1;
    }));
}
