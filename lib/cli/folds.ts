// `pigg folds`: PIGG's seeded k-fold split of the indices 0..n-1, printed as one compact JSON line.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { kFolds } from '../data/folds.js';
import { action, integerOption } from './common.js';

/** Seeds are any Python int (sign ignored by random.seed), so parse to bigint to keep large ones exact. */
function seedOption(value: string): bigint {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`--seed expects an integer, got '${value}'`);
  return BigInt(value.trim());
}

export function register(program: Command): void {
  program
    .command('folds')
    .description("print PIGG's k-fold split (Python random.seed + random.shuffle) of indices 0..n-1 as JSON")
    .requiredOption('--n <n>', 'number of samples', integerOption('--n', 0))
    .option('--k <k>', 'number of folds', integerOption('--k', 1), 3)
    // A bigint default needs its own description: commander would JSON.stringify it for --help and throw.
    .addOption(new Option('--seed <seed>', 'Python random.seed value').argParser(seedOption).default(42n, '42'))
    .action(
      action((options: { n: number; k: number; seed: bigint }) => {
        process.stdout.write(`${JSON.stringify(kFolds(options.n, options.k, options.seed))}\n`);
      }),
    );
}
