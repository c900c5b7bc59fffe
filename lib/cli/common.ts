// Shared CLI plumbing: every command reports failures as one line on stderr and exit code 1.
import { InvalidArgumentError } from 'commander';

export function action<A extends unknown[]>(run: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      process.stderr.write(`pigg: ${message}\n`);
      process.exitCode = 1;
    }
  };
}

/** Parses a non-negative integer flag value, rejecting anything else with a message naming the flag. */
export function integerOption(flag: string, min = 0): (value: string) => number {
  return (value: string) => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${flag} expects an integer, got '${value}'`);
    const n = Number.parseInt(value, 10);
    if (n < min) throw new InvalidArgumentError(`${flag} must be >= ${min}, got ${n}`);
    return n;
  };
}

export function choiceOption<T extends string>(flag: string, choices: readonly T[]): (value: string) => T {
  return (value: string) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`${flag} must be one of ${choices.join(', ')}, got '${value}'`);
    }
    return value as T;
  };
}
