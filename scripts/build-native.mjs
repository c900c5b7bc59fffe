#!/usr/bin/env node
// The development checkout's build (`npm run build:native`): cmake-js against the libtorch that
// scripts/libtorch.mjs finds, provisioning a project-local .venv with torch when none is found. Extra arguments go
// to cmake-js. (An installed pigg builds through scripts/install.mjs instead.)
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildAddon, describeBuild, writeStamp } from './addon.mjs';
import { findLibtorch } from './libtorch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
execFileSync(process.execPath, [join(root, 'scripts', 'libtorch.mjs'), '--provision'], { stdio: 'inherit' });
const libtorch = findLibtorch();
buildAddon(root, libtorch, process.argv.slice(2));
writeStamp(root, describeBuild(root, libtorch));
