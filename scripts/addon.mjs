// The native addon's build and its identity: cmake-js against a given libtorch, the key that says exactly what an
// addon was built from and for, and the stamp file (build/Release/pigg-build.json) that records it beside the
// addon for `pigg doctor`. Used by the clone's `npm run build` (scripts/build-native.mjs) and by the install step
// (scripts/install.mjs).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join, relative } from 'node:path';

export const ADDON = join('build', 'Release', 'pigg.node');
export const STAMP = join('build', 'Release', 'pigg-build.json');

function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

/** sha256 over the native sources and the CMake file, by path and content. */
export function sourceHash(root) {
  const hash = createHash('sha256');
  for (const file of [join(root, 'CMakeLists.txt'), ...filesUnder(join(root, 'native'))]) {
    hash.update(relative(root, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex');
}

/**
 * Everything an addon binary depends on: pigg's version and native sources, the exact libtorch (version and
 * folder: the addon finds libtorch's libraries by that path), Node's ABI and the platform. An addon is reused only
 * under the same description; `key` is its hash.
 */
export function describeBuild(root, libtorch) {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const build = {
    pigg: version,
    sources: sourceHash(root),
    torch: { version: libtorch.version, root: realpathSync(libtorch.root), cuda: libtorch.cuda, source: libtorch.source },
    node: { modules: process.versions.modules, napi: process.versions.napi },
    platform: `${process.platform}-${process.arch}`,
  };
  return { key: createHash('sha256').update(JSON.stringify(build)).digest('hex').slice(0, 32), ...build };
}

export function writeStamp(root, build) {
  writeFileSync(join(root, STAMP), `${JSON.stringify({ ...build, builtAt: new Date().toISOString() }, null, 2)}\n`);
}

/** cmake-js as a dependency of the package at root (hoisted or not). */
function cmakeJs(root) {
  const require = createRequire(join(root, 'package.json'));
  return join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
}

/** Configures and builds build/Release/pigg.node against libtorch (CMake's output is the progress). */
export function buildAddon(root, libtorch, extraArgs = []) {
  mkdirSync(join(root, 'build'), { recursive: true });
  const jobs = process.env.PIGG_BUILD_JOBS ?? String(Math.max(1, cpus().length));
  execFileSync(process.execPath, [cmakeJs(root), 'compile', `--CDCMAKE_PREFIX_PATH=${libtorch.prefix}`, '--parallel', jobs, ...extraArgs], {
    cwd: root,
    stdio: 'inherit',
  });
}

/** Loads an addon in a child process and returns its versions() ({torch, cuda}), or throws with the loader's error. */
export function probeAddon(file) {
  const script = 'process.stdout.write(require(process.argv[1]).versions())';
  try {
    return JSON.parse(execFileSync(process.execPath, ['-e', script, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (error) {
    const message = (error.stderr || error.message).split('\n').find((line) => /Error|error/.test(line)) ?? error.message;
    throw new Error(message.trim());
  }
}
