// `pigg doctor`: what pigg runs on here (Node, libtorch, the addon and the torch it was built against, CUDA, the
// tokenizer files), and for each problem the command that fixes it; exit 1 when there is one.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ADDON, sourceHash, STAMP, type BuildDescription } from '../../scripts/addon.mjs';
import { findLibtorch, type Libtorch } from '../../scripts/libtorch.mjs';
import { native } from '../engine/native.js';
import { buildCommand, PACKAGE_ROOT, piggVersion, reinstallCommand } from '../package.js';
import { bundledTokenizerDir } from '../processor/tokenizer.js';
import { action } from './common.js';

const MIN_NODE = [20, 17] as const;

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

const describeTorch = (torch: { version: string; cuda: boolean; root: string }) => `${torch.version} (${torch.cuda ? 'CUDA' : 'CPU'}) at ${torch.root}`;

function nodeCheck(): Check {
  const [major, minor] = process.versions.node.split('.').map(Number);
  const ok = major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1]);
  return { name: 'node', ok, detail: `${process.version} (pigg needs ${MIN_NODE.join('.')}+)`, ...(ok ? {} : { fix: 'install Node.js 20.17 or newer' }) };
}

function readStamp(): BuildDescription | null {
  try {
    return JSON.parse(readFileSync(join(PACKAGE_ROOT, STAMP), 'utf8')) as BuildDescription;
  } catch {
    return null;
  }
}

/** The addon: present, loadable, built from these sources, and which torch it was built against and runs on. */
function addonChecks(libtorch: Libtorch | null): Check[] {
  const fix = buildCommand();
  const file = join(PACKAGE_ROOT, ADDON);
  if (!existsSync(file)) return [{ name: 'addon', ok: false, detail: `${file} is missing (the install step did not run or failed)`, fix }];
  let versions: { torch: string; cuda: boolean };
  try {
    versions = JSON.parse(native().versions()) as { torch: string; cuda: boolean };
  } catch (error) {
    return [{ name: 'addon', ok: false, detail: `${file} does not load: ${(error as Error).message}`, fix }];
  }
  const stamp = readStamp();
  const checks: Check[] = [];
  if (!stamp) {
    checks.push({ name: 'addon', ok: true, detail: `${file} runs on torch ${versions.torch} (no build record beside it)` });
  } else if (stamp.sources !== sourceHash(PACKAGE_ROOT)) {
    checks.push({ name: 'addon', ok: false, detail: `${file} was built from other native sources than these`, fix });
  } else {
    const elsewhere = libtorch && realpathSync(libtorch.root) !== stamp.torch.root ? `; the libtorch found now is ${libtorch.root} (\`${fix}\` builds against it)` : '';
    checks.push({ name: 'addon', ok: true, detail: `built against torch ${describeTorch(stamp.torch)} on ${stamp.builtAt ?? '?'}, runs on torch ${versions.torch}${elsewhere}` });
  }
  const gpuPresent = existsSync('/dev/nvidia0');
  checks.push({
    name: 'cuda',
    ok: true,
    detail: versions.cuda ? 'visible' : `not visible${gpuPresent && stamp && !stamp.torch.cuda ? ` (this machine has an NVIDIA GPU and the addon a CPU libtorch: \`PIGG_TORCH=cuda ${fix}\`)` : ''}`,
  });
  return checks;
}

function tokenizerCheck(): Check {
  try {
    const dir = bundledTokenizerDir();
    const bytes = ['tokenizer.json', 'tokenizer_config.json'].reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
    return { name: 'tokenizer', ok: true, detail: `tokenizer.json and tokenizer_config.json (${(bytes / 1e6).toFixed(1)} MB) in ${dir}` };
  } catch (error) {
    return { name: 'tokenizer', ok: false, detail: (error as Error).message, fix: reinstallCommand() };
  }
}

export function doctorChecks(): Check[] {
  const found = findLibtorch();
  const libtorch = 'error' in found ? null : found;
  return [
    nodeCheck(),
    { name: 'pigg', ok: true, detail: `${piggVersion()} at ${PACKAGE_ROOT}` },
    libtorch
      ? { name: 'libtorch', ok: true, detail: `${describeTorch(libtorch)} (${libtorch.source})` }
      : { name: 'libtorch', ok: false, detail: (found as { error: string }).error, fix: buildCommand() },
    ...addonChecks(libtorch),
    tokenizerCheck(),
  ];
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description('check Node, libtorch, the native addon, CUDA and the tokenizer files; print the fix for each problem')
    .option('--json', 'print the checks as JSON')
    .action(action((options: { json?: boolean }) => {
      const checks = doctorChecks();
      if (options.json) {
        console.log(JSON.stringify(checks, null, 2));
      } else {
        for (const check of checks) {
          console.log(`${check.ok ? 'ok  ' : 'FAIL'}  ${check.name.padEnd(9)}  ${check.detail}`);
          if (check.fix) console.log(`${' '.repeat(17)}fix: ${check.fix}`);
        }
        const problems = checks.filter((check) => !check.ok).length;
        console.log(problems === 0 ? 'pigg is ready' : `${problems} problem${problems > 1 ? 's' : ''}`);
      }
      if (checks.some((check) => !check.ok)) process.exitCode = 1;
    }));
}
