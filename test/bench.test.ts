// The CPU benchmark harness runs (short) in CI: no timing is asserted, only that every row is measured and the
// results file has the documented layout.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';

it('bench/train-step.mjs writes a results file with every metric measured', () => {
  const out = mkdtempSync(join(tmpdir(), 'pigg-bench-'));
  try {
    const env = { ...process.env };
    delete env.PIGG_HF_PYTHON;
    execFileSync(process.execPath, [resolve(import.meta.dirname, '..', 'bench', 'train-step.mjs'), '--name', 'ci', '--steps', '1', '--batch', '1', '--seq', '64', '--out', out], { env, stdio: 'pipe' });
    const result = JSON.parse(readFileSync(join(out, 'cpu-ci.json'), 'utf8'));
    expect(Object.keys(result)).toEqual(expect.arrayContaining(['command', 'device', 'date', 'versions', 'rows']));
    expect(result.versions.pigg).toBe('0.1.0');
    expect(result.rows).toHaveLength(20);  // 4 variants x 5 metrics
    for (const row of result.rows) {
      expect(Object.keys(row).sort()).toEqual(['bench', 'config', 'metric', 'pigg', 'ratio', 'transformers', 'unit']);
      expect(row.pigg).toBeGreaterThan(0);
      expect(row.transformers).toBeNull();
      expect(row.ratio).toBeNull();
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
