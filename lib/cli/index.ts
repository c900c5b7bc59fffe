#!/usr/bin/env node
// The `pigg` command line. Each command lives in its own module and registers itself on the program.
import { Command } from 'commander';
import { piggVersion } from '../package.js';
import { commands } from './commands.js';

const program = new Command();
program
  .name('pigg')
  .description('Personalized GUI grounding with Qwen3-VL')
  .version(piggVersion(), '-V, --version', 'print the pigg version')
  .configureOutput({ writeErr: (text) => process.stderr.write(text.startsWith('error:') ? `pigg: ${text}` : text) })
  .exitOverride((error) => {
    // commander's own errors (unknown flag, bad value) exit 2; help and version exit 0.
    process.exit(error.exitCode === 0 ? 0 : 2);
  });

for (const register of commands) register(program);

await program.parseAsync(process.argv);
