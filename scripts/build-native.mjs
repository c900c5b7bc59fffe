#!/usr/bin/env node
// Builds the native addon with cmake-js against the libtorch that scripts/libtorch.mjs finds (provisioning
// a project-local .venv with torch when none is found).
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
execFileSync(process.execPath, [join(root, 'scripts', 'libtorch.mjs'), '--provision'], { stdio: 'inherit' });
const prefix = execFileSync(process.execPath, [join(root, 'scripts', 'libtorch.mjs'), '--field', 'prefix'], { encoding: 'utf8' }).trim();
const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const jobs = process.env.PIGG_BUILD_JOBS ?? String(Math.max(1, cpus().length));
execFileSync(process.execPath, [cmakeJs, 'compile', '--CDCMAKE_PREFIX_PATH=' + prefix, '--parallel', jobs, ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
});
