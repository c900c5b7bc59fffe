#!/usr/bin/env node
// Finds libtorch for the native build, in the documented order:
//   1. $LIBTORCH (an unpacked libtorch, or a torch install's package folder)
//   2. the `torch` of `python3` (torch.utils.cmake_prefix_path)
//   3. a project-local .venv
// With --provision, creates .venv with torch when none is found (CPU wheel; PIGG_TORCH_CUDA=1 for the CUDA one).
// Prints a JSON object {prefix, root, include, lib, version, cuda}; `--field NAME` prints one field
// (binding.gyp uses that for its include and library flags).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const venvPython = join(projectRoot, '.venv', 'bin', 'python');

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

export function findLibtorch() {
  const tried = [];
  if (process.env.LIBTORCH) {
    const env = resolve(process.env.LIBTORCH);
    const found = describeRoot(env, 'LIBTORCH') ?? describeRoot(join(env, 'torch'), 'LIBTORCH');
    if (found) return found;
    tried.push(`LIBTORCH=${env} has no share/cmake/Torch/TorchConfig.cmake`);
  }
  for (const [python, source] of [['python3', 'python3'], [venvPython, '.venv']]) {
    if (source === '.venv' && !existsSync(venvPython)) continue;
    const found = fromPython(python, source);
    if (found) return found;
    tried.push(`${source}: no importable torch`);
  }
  return { error: `libtorch not found (${tried.join('; ')}). Set LIBTORCH to an unpacked libtorch 2.x, ` +
    `or run \`npm run torch\` (python3 -m venv .venv && .venv/bin/pip install torch).` };
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

function provision() {
  const cuda = process.env.PIGG_TORCH_CUDA === '1';
  const spec = process.env.PIGG_TORCH_SPEC ?? (cuda ? 'torch' : 'torch==2.13.0+cpu');
  console.error(`pigg: provisioning ${spec} into .venv`);
  if (!existsSync(venvPython)) execFileSync('python3', ['-m', 'venv', join(projectRoot, '.venv')], { stdio: 'inherit' });
  const install = (extra) => execFileSync(venvPython, ['-m', 'pip', 'install', '-q', spec, ...extra], { stdio: 'inherit', env: pipEnvironment() });
  try {
    install([]);  // pip's configured indexes first (a local wheel store where there is one)
  } catch (error) {
    // The +cpu wheels live on PyTorch's own index.
    if (cuda) throw error;
    install(['--extra-index-url', 'https://download.pytorch.org/whl/cpu']);
  }
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  let found = findLibtorch();
  if (found.error && process.argv.includes('--provision')) {
    provision();
    found = findLibtorch();
  }
  if (found.error) {
    console.error(`pigg: ${found.error}`);
    process.exit(1);
  }
  const fieldIndex = process.argv.indexOf('--field');
  if (fieldIndex >= 0) console.log(found[process.argv[fieldIndex + 1]]);
  else if (isMain && process.argv.includes('--provision')) console.error(`pigg: libtorch ${found.version} at ${found.root} (${found.source})`);
  else console.log(JSON.stringify(found, null, 2));
}
