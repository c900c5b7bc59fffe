#!/usr/bin/env node
// Finds libtorch for the native build, in the documented order:
//   1. $LIBTORCH (an unpacked libtorch, or a torch install's package folder)
//   2. the `torch` of `python3` (torch.utils.cmake_prefix_path)
//   3. a project-local .venv (a development checkout)
//   4. in an installed pigg (not in a development checkout, whose build keeps to its .venv), the per-user cache,
//      $PIGG_CACHE or ~/.cache/pigg: torch/cuda, then torch/cpu (what `npm install pigg` provisions)
// With PIGG_TORCH=cuda (or PIGG_TORCH_CUDA=1) only a CUDA libtorch counts.
// With --provision, creates .venv with torch when none is found (CPU wheel; the CUDA one with PIGG_TORCH=cuda).
// Prints a JSON object {prefix, root, include, lib, version, cuda, source}; `--field NAME` prints one field
// (binding.gyp uses that for its include and library flags).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const venvPython = join(projectRoot, '.venv', 'bin', 'python');
const CPU_SPEC = 'torch==2.13.0+cpu';

/** A clone of the repository has the TypeScript sources; the published package has not. */
export function isDevelopmentCheckout() {
  return existsSync(join(projectRoot, 'lib', 'index.ts'));
}

/** The per-user cache: provisioned libtorch and built addons, shared by every project on the machine. */
export function cacheDir() {
  if (process.env.PIGG_CACHE) return resolve(process.env.PIGG_CACHE);
  return join(process.env.XDG_CACHE_HOME ? resolve(process.env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'pigg');
}

/** 'cuda' when asked for (PIGG_TORCH=cuda, PIGG_TORCH_CUDA=1 or `npm … --pigg-torch=cuda`), else 'cpu'. */
export function torchFlavour() {
  const asked = (process.env.PIGG_TORCH ?? process.env.npm_config_pigg_torch ?? '').toLowerCase();
  if (asked && asked !== 'cpu' && asked !== 'cuda') throw new Error(`PIGG_TORCH must be cpu or cuda, got '${asked}'`);
  return asked === 'cuda' || process.env.PIGG_TORCH_CUDA === '1' ? 'cuda' : 'cpu';
}

function describeRoot(root, source) {
  // root holds include/ and lib/ (libtorch zip layout or site-packages/torch).
  const cmakeDir = join(root, 'share', 'cmake', 'Torch');
  if (!existsSync(join(cmakeDir, 'TorchConfig.cmake'))) return null;
  const versionFile = join(cmakeDir, 'TorchConfigVersion.cmake');
  const match = existsSync(versionFile) && /PACKAGE_VERSION "([^"]+)"/.exec(readFileSync(versionFile, 'utf8'));
  const version = match ? match[1] : 'unknown';
  if (!/^2\./.test(version)) {
    return { error: `libtorch at ${root} (${source}) is version ${version}; pigg needs libtorch 2.x` };
  }
  const cuda = existsSync(join(root, 'lib', 'libtorch_cuda.so'));
  return { prefix: join(root, 'share', 'cmake'), root, include: join(root, 'include'), lib: join(root, 'lib'), version, cuda, source };
}

function fromPython(python, source) {
  try {
    const out = execFileSync(python, ['-c', 'import torch, os; print(os.path.dirname(torch.__file__))'], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return out ? describeRoot(out, source) : null;
  } catch {
    return null;
  }
}

/** Where provisioning puts a flavour's torch in the per-user cache (a pip --target folder). */
export function cachedTorchDir(flavour) {
  return join(cacheDir(), 'torch', flavour);
}

export function findLibtorch(flavour = torchFlavour()) {
  const wantCuda = flavour === 'cuda';
  if (process.env.LIBTORCH) {
    // An explicit LIBTORCH is never passed over for another libtorch.
    const env = resolve(process.env.LIBTORCH);
    const found = describeRoot(env, 'LIBTORCH') ?? describeRoot(join(env, 'torch'), 'LIBTORCH');
    if (!found) return { error: `LIBTORCH=${env} has no share/cmake/Torch/TorchConfig.cmake` };
    if (!found.error && wantCuda && !found.cuda) return { error: `LIBTORCH=${env} is libtorch ${found.version} without CUDA (PIGG_TORCH=cuda)` };
    return found;
  }
  const candidates = [
    ['python3', () => fromPython('python3', 'python3')],
    ['.venv', () => (existsSync(venvPython) ? fromPython(venvPython, '.venv') : undefined)],
    ...['cuda', 'cpu'].map((cached) => [cachedTorchDir(cached), () => (isDevelopmentCheckout() ? undefined : describeRoot(join(cachedTorchDir(cached), 'torch'), 'cache'))]),
  ];
  const tried = [];
  for (const [what, find] of candidates) {
    const found = find();
    if (found === undefined) continue;
    if (!found) tried.push(`${what}: none`);
    else if (found.error) tried.push(found.error);
    else if (wantCuda && !found.cuda) tried.push(`${what}: libtorch ${found.version} without CUDA`);
    else return found;
  }
  return { error: `no libtorch 2.x${wantCuda ? ' with CUDA' : ''} found (LIBTORCH unset; ${tried.join('; ')})` };
}

// A machine whose pip is configured with a local wheel store (file:// index) installs offline from it: make it
// the primary index so pip does not spend minutes retrying an unreachable PyPI for every dependency.
export function pipEnvironment(python = venvPython) {
  if (process.env.PIP_INDEX_URL) return process.env;
  try {
    const extra = execFileSync(python, ['-m', 'pip', 'config', 'get', 'global.extra-index-url'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const local = extra.split(/\s+/).find((url) => url.startsWith('file://'));
    return local ? { ...process.env, PIP_INDEX_URL: local } : process.env;
  } catch {
    return process.env;
  }
}

export function torchSpec(flavour) {
  return process.env.PIGG_TORCH_SPEC ?? (flavour === 'cuda' ? 'torch' : CPU_SPEC);
}

// pip's configured indexes first (a local wheel store where there is one); the +cpu wheels live on PyTorch's
// own index, the CUDA ones on PyPI.
function pipInstall(python, args, flavour) {
  const install = (extra) => execFileSync(python, ['-m', 'pip', 'install', ...args, ...extra], { stdio: 'inherit', env: pipEnvironment(python) });
  try {
    install([]);
  } catch (error) {
    if (flavour === 'cuda') throw error;
    install(['--extra-index-url', 'https://download.pytorch.org/whl/cpu']);
  }
}

/** Creates the development checkout's .venv with torch (`npm run torch`). */
function provisionVenv(flavour) {
  const spec = torchSpec(flavour);
  console.error(`pigg: provisioning ${spec} into .venv`);
  if (!existsSync(venvPython)) execFileSync('python3', ['-m', 'venv', join(projectRoot, '.venv')], { stdio: 'inherit' });
  pipInstall(venvPython, ['-q', spec], flavour);
}

/**
 * Puts torch's package folder (libraries, headers, CMake files: all the build needs) into the per-user cache with
 * python3's pip, without its Python dependencies. Written to a temp folder and renamed, so an interrupted download
 * is never taken for a libtorch. Returns findLibtorch()'s answer for it.
 */
export function provisionCache(flavour) {
  const target = cachedTorchDir(flavour);
  const temp = `${target}.tmp-${process.pid}`;
  rmSync(temp, { recursive: true, force: true });
  try {
    pipInstall('python3', ['--no-deps', '--target', temp, '--progress-bar', 'on', torchSpec(flavour)], flavour);
    rmSync(target, { recursive: true, force: true });
    renameSync(temp, target);
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
  return describeRoot(join(target, 'torch'), 'cache') ?? { error: `${target} has no torch package after pip install` };
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  let found = findLibtorch();
  if (found.error && process.argv.includes('--provision')) {
    provisionVenv(torchFlavour());
    found = findLibtorch();
  }
  if (found.error) {
    console.error(`pigg: ${found.error}. Set LIBTORCH to an unpacked libtorch 2.x, or run \`npm run torch\` (python3 -m venv .venv && .venv/bin/pip install torch).`);
    process.exit(1);
  }
  const fieldIndex = process.argv.indexOf('--field');
  if (fieldIndex >= 0) console.log(found[process.argv[fieldIndex + 1]]);
  else if (process.argv.includes('--provision')) console.error(`pigg: libtorch ${found.version} at ${found.root} (${found.source})`);
  else console.log(JSON.stringify(found, null, 2));
}
