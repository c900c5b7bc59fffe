#!/usr/bin/env node
// pigg's install step: npm runs it when pigg is installed as a dependency, and `npm rebuild pigg` runs it again.
//   1. libtorch: LIBTORCH, python3's torch or the per-user cache (scripts/libtorch.mjs); if none, python3's pip
//      fetches the CPU torch wheel (the CUDA one with PIGG_TORCH=cuda) into the cache, ~/.cache/pigg/torch/.
//   2. the addon: reused from ~/.cache/pigg/addons/<key> when one was built from the same pigg sources against the
//      same libtorch for the same Node ABI and platform; else built with cmake-js and kept there.
//   3. the addon is loaded once to check it reports that libtorch.
// A failure prints what is missing and the command that fixes it. PIGG_SKIP_BUILD=1 skips the step. The package
// ships no binary: every addon is built on (or for exactly) the machine that runs it.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDON, buildAddon, describeBuild, probeAddon, writeStamp } from './addon.mjs';
import { cacheDir, cachedTorchDir, findLibtorch, isDevelopmentCheckout, provisionCache, torchFlavour, torchSpec } from './libtorch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REBUILD = 'npm rebuild pigg';
const log = (line) => console.error(`pigg: ${line}`);
const secondsSince = (start) => Math.round((Date.now() - start) / 1000);

class Missing extends Error {
  constructor(what, fix) {
    super(what);
    this.fix = fix;
  }
}

const works = (command, args) => {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

function libtorch(flavour) {
  const found = findLibtorch(flavour);
  if (!found.error) return found;
  if (process.env.LIBTORCH) throw new Missing(found.error, `point LIBTORCH at an unpacked libtorch 2.x (or unset it) and run \`${REBUILD}\``);
  if (!works('python3', ['-m', 'pip', '--version'])) {
    throw new Missing(`${found.error}, and no python3 with pip to fetch one`,
      `\`sudo apt-get install -y python3-pip && ${REBUILD}\` (or set LIBTORCH to an unpacked libtorch 2.x and run \`${REBUILD}\`)`);
  }
  log(`[1/3] no libtorch found: fetching ${torchSpec(flavour)} into ${cachedTorchDir(flavour)} with pip (${flavour === 'cuda' ? 'about 3 GB' : 'about 200 MB'})`);
  const started = Date.now();
  let provisioned;
  try {
    provisioned = provisionCache(flavour);
    log(`[1/3] fetched in ${secondsSince(started)} s`);
  } catch (error) {
    throw new Missing(`pip could not install ${torchSpec(flavour)} (${error.message.split('\n')[0]})`,
      `set LIBTORCH to an unpacked libtorch 2.x (https://pytorch.org) and run \`${REBUILD}\``);
  }
  if (provisioned.error) throw new Missing(provisioned.error, `rm -rf ${cachedTorchDir(flavour)} && ${REBUILD}`);
  return provisioned;
}

function build(torch, cached) {
  if (!works('cmake', ['--version'])) throw new Missing('cmake (3.18 or newer) is needed to build the addon', `sudo apt-get install -y cmake && ${REBUILD}`);
  if (!works(process.env.CXX ?? 'c++', ['--version'])) throw new Missing('a C++20 compiler is needed to build the addon', `sudo apt-get install -y g++ && ${REBUILD}`);
  log('[2/3] building the native addon with cmake-js (several minutes on 2 cores; once per pigg version and libtorch)');
  const started = Date.now();
  try {
    buildAddon(root, torch);
    log(`[2/3] built in ${secondsSince(started)} s`);
  } catch {
    throw new Missing('the native build failed (the compiler output is above)', `PIGG_BUILD_JOBS=1 ${REBUILD} --foreground-scripts (one compiler at a time, if it ran out of memory)`);
  }
  // The objects are of no further use here; the addon is kept in the per-user cache for the next install.
  for (const entry of readdirSync(join(root, 'build'))) if (entry !== 'Release') rmSync(join(root, 'build', entry), { recursive: true, force: true });
  keep(cached);
}

/** Copies the addon into the per-user cache (temp folder + rename). Best effort: an unwritable cache or a parallel
 * install that kept the same addon first costs only the next install's build. */
function keep(cached) {
  const temp = `${cached}.tmp-${process.pid}`;
  try {
    mkdirSync(temp, { recursive: true });
    copyFileSync(join(root, ADDON), join(temp, 'pigg.node'));
    rmSync(cached, { recursive: true, force: true });
    renameSync(temp, cached);
  } catch (error) {
    rmSync(temp, { recursive: true, force: true });
    if (!existsSync(join(cached, 'pigg.node'))) log(`[2/3] the addon is not kept in ${cached} (${error.message})`);
  }
}

function install() {
  const started = Date.now();
  let flavour;
  try {
    flavour = torchFlavour();
  } catch (error) {
    throw new Missing(error.message, `PIGG_TORCH=cuda ${REBUILD} (or PIGG_TORCH=cpu)`);
  }
  log(`[1/3] looking for libtorch 2.x${flavour === 'cuda' ? ' with CUDA' : ''}`);
  const torch = libtorch(flavour);
  log(`[1/3] libtorch ${torch.version}${torch.cuda ? ' (CUDA)' : ' (CPU)'} at ${torch.root} (${torch.source})`);

  const description = describeBuild(root, torch);
  const cached = join(cacheDir(), 'addons', description.key);
  if (existsSync(join(cached, 'pigg.node'))) {
    log(`[2/3] reusing the addon built for this pigg, libtorch and Node: ${cached}`);
    mkdirSync(dirname(join(root, ADDON)), { recursive: true });
    copyFileSync(join(cached, 'pigg.node'), join(root, ADDON));
  } else {
    build(torch, cached);
  }

  let versions;
  try {
    versions = probeAddon(join(root, ADDON));
  } catch (error) {
    rmSync(cached, { recursive: true, force: true });
    throw new Missing(`the built addon does not load (${error.message})`, REBUILD);
  }
  if (versions.torch !== torch.version.replace(/\+.*$/, '')) {
    rmSync(cached, { recursive: true, force: true });
    throw new Missing(`the addon reports torch ${versions.torch}, not the ${torch.version} it was built against`, REBUILD);
  }
  writeStamp(root, description);
  log(`[3/3] ready in ${secondsSince(started)} s: the addon runs on libtorch ${torch.version}${versions.cuda ? ', CUDA visible' : ''} (\`npx pigg doctor\` checks it)`);
}

if (process.env.PIGG_SKIP_BUILD === '1') {
  log(`PIGG_SKIP_BUILD=1: the native addon is not built; \`${REBUILD}\` builds it`);
} else if (isDevelopmentCheckout()) {
  log('a development checkout: `npm run build` builds the addon');  // the clone provisions .venv and builds in place
} else {
  try {
    install();
  } catch (error) {
    if (!(error instanceof Missing)) throw error;
    console.error(`pigg: ${error.message}\npigg: fix: ${error.fix}`);
    process.exit(1);
  }
}
