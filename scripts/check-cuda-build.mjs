#!/usr/bin/env node
// Compiles (does not link or run) every native source against the CUDA torch wheel's headers, with the CUDA
// code paths on, so the CUDA build cannot break unseen on machines without a GPU. The wheels come through pip
// (offline from a local store where one is configured); without them the check is skipped, not failed.
//   node scripts/check-cuda-build.mjs [--torch torch==2.14.1]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pipEnvironment } from './libtorch.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const torchSpec = process.argv.includes('--torch') ? process.argv[process.argv.indexOf('--torch') + 1] : 'torch==2.14.1';
const work = join(tmpdir(), 'pigg-cuda-check');
const wheels = join(work, 'wheels');
mkdirSync(wheels, { recursive: true });

const have = (prefix) => readdirSync(wheels).find((f) => f.startsWith(prefix) && f.endsWith('.whl'));
try {
  for (const [spec, prefix] of [[torchSpec, 'torch-'], ['nvidia-cuda-runtime', 'nvidia_cuda_runtime-'], ['nvidia-cuda-crt', 'nvidia_cuda_crt-']]) {
    if (!have(prefix)) {
      execFileSync('python3', ['-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '-d', wheels, spec], { stdio: 'inherit', env: pipEnvironment('python3') });
    }
  }
} catch {
  console.log('check-cuda-build: skipped (the CUDA torch wheel or the CUDA runtime headers could not be had through pip here)');
  process.exit(0);
}
const headers = join(work, 'headers');
if (!existsSync(join(headers, 'torch', 'include'))) {
  execFileSync('unzip', ['-q', '-o', join(wheels, have('torch-')), 'torch/include/*', '-d', headers]);
  for (const prefix of ['nvidia_cuda_runtime-', 'nvidia_cuda_crt-']) execFileSync('unzip', ['-q', '-o', join(wheels, have(prefix)), '-d', headers]);
}
const cudaInclude = execFileSync('find', [headers, '-name', 'cuda_runtime.h'], { encoding: 'utf8' }).trim().split('\n')[0];
if (!cudaInclude) throw new Error('check-cuda-build: the nvidia-cuda-runtime wheel has no cuda_runtime.h');
const flags = ['-std=c++20', '-fsyntax-only', '-DPIGG_WITH_CUDA=1', `-I${join(root, 'native')}`, `-I${join(root, 'native', 'third_party')}`,
  `-I${join(headers, 'torch', 'include')}`, `-I${join(headers, 'torch', 'include', 'torch', 'csrc', 'api', 'include')}`, `-I${dirname(cudaInclude)}`];
const sources = readdirSync(join(root, 'native')).filter((f) => f.endsWith('.cpp')).map((f) => join(root, 'native', f));
// A few compilers at a time: each torch-heavy source takes ~1 GB and 10-20 s.
const parallel = Math.max(1, cpus().length);
const pending = [...sources];
const failures = [];
await Promise.all(Array.from({ length: parallel }, async () => {
  for (let source = pending.shift(); source; source = pending.shift()) {
    await new Promise((done) => {
      import('node:child_process').then(({ execFile }) => execFile('g++', [...flags, source], (error, _out, stderr) => {
        if (error) failures.push(`${source}:\n${stderr}`);
        done();
      }));
    });
  }
}));
if (failures.length > 0) {
  console.error(failures.join('\n'));
  console.error(`check-cuda-build: ${failures.length} of ${sources.length} sources fail to compile against ${have('torch-')}`);
  process.exit(1);
}
console.log(`check-cuda-build: all ${sources.length} native sources compile against ${have('torch-')} with the CUDA paths on`);
