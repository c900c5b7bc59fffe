// Compiles lib/ into dist/ once before the suites: the CLI tests run dist/cli/index.js and the image pool's
// workers run dist/processor/image-worker.js, so both must match the sources under test. Type errors elsewhere in
// the tree do not block emitting.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const run = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
    cwd: root, encoding: 'utf8', timeout: 300_000,
  });
  if (!existsSync(join(root, 'dist', 'cli', 'index.js'))) throw new Error(`tsc did not produce dist/:\n${run.stdout}${run.stderr}`);
}
