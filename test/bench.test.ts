// The CPU benchmark harness runs (short) in CI: no timing is asserted, only that every row is measured and the
// results file has the documented layout.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';

/**
 * A measured value: a finite number. Nothing more is asserted about timings (or differences of measurements): on a
 * loaded machine a derived time such as (latency − prefill) / tokens can come out negative.
 */
function expectMeasured(value: unknown, what: string): void {
  expect(typeof value, what).toBe('number');
  expect(Number.isFinite(value), `${what}: ${value}`).toBe(true);
}

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
      expectMeasured(row.pigg, row.metric);
      expect(row.transformers).toBeNull();
      expect(row.ratio).toBeNull();
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

// PIGG-shaped inputs are 1088×2400 screenshots (2550 image tokens, as PIGG's runs fed them): a few minutes on 2 cores.
it('bench/gpu.mjs runs every bench end to end on the CPU (tiny config, bf16: all five training variants)', { timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'pigg-gpu-bench-'));
  try {
    const env = { ...process.env };
    delete env.PIGG_HF_PYTHON;
    const args = ['--config', 'tiny', '--device', 'cpu', '--dtype', 'bf16', '--steps', '1', '--warmup', '0', '--accum', '2', '--runs', '1',
      '--new-tokens', '4', '--eval-batch', '2', '--work', join(dir, 'work'), '--out', dir, '--name', 'ci'];
    execFileSync(process.execPath, [resolve(import.meta.dirname, '..', 'bench', 'gpu.mjs'), ...args], { env, stdio: 'pipe' });
    const result = JSON.parse(readFileSync(join(dir, 'ci.json'), 'utf8'));
    expect(Object.keys(result)).toEqual(expect.arrayContaining(['command', 'device', 'date', 'versions', 'rows']));
    expect(result.device).toMatch(/^CPU only/);
    expect(result.versions).toMatchObject({ pigg: '0.1.0', transformers: null });
    const count = (bench: string) => result.rows.filter((r: { bench: string }) => r.bench === bench).length;
    // 5 variants (master, kahan, stochastic, pure, LoRA) x 7 metrics; click: latency, prefill, per token, decode
    // tokens/s; eval: samples/s, decode tokens/s and the generation child's peak; load: 1.
    expect([count('train'), count('click'), count('eval'), count('load')]).toEqual([35, 4, 3, 1]);
    for (const variant of ['update mode master', 'update mode kahan', 'update mode stochastic', 'update mode pure', 'LoRA r 8']) {
      expect(result.rows.filter((r: { config: string }) => r.config.includes(variant))).toHaveLength(7);
    }
    for (const row of result.rows) {
      expect(Object.keys(row).sort()).toEqual(['bench', 'config', 'metric', 'pigg', 'ratio', 'transformers', 'unit']);
      expect(['s', 'samples/s', 'tokens/s', '%', 'MiB']).toContain(row.unit);
      expect(row.config).not.toContain('[');  // no side failed
      expect(row.transformers).toBeNull();
      expect(row.ratio).toBeNull();
      if (row.metric.startsWith('MFU')) {
        expect(row.unit).toBe('%');
        expect(row.pigg).toBeNull();  // no peak FLOP/s on the CPU
      } else {
        expectMeasured(row.pigg, `${row.bench}: ${row.metric}`);
      }
    }
    expect(result.rows.find((r: { metric: string }) => r.metric.startsWith('latency')).config).toContain('4 new tokens');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('bench/pipeline.mjs measures preprocessing and predict() from image files for each worker count (tiny, CPU)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pigg-pipeline-bench-'));
  try {
    const args = ['--samples', '4', '--batch', '2', '--workers', '0,1', '--new-tokens', '2', '--work', join(dir, 'work'), '--out', dir, '--name', 'ci'];
    execFileSync(process.execPath, [resolve(import.meta.dirname, '..', 'bench', 'pipeline.mjs'), ...args], { stdio: 'pipe' });
    const result = JSON.parse(readFileSync(join(dir, 'pipeline-ci.json'), 'utf8'));
    expect(result.rows.map((r: { metric: string; config: string }) => [r.metric.split(',')[0], r.config.match(/image workers (\d+)/)![1]])).toEqual([
      ['images per second', '0'], ['samples per second', '0'], ['images per second', '1'], ['samples per second', '1'],
    ]);
    for (const row of result.rows) {
      expectMeasured(row.pigg, row.metric);
      expect(row.config).toContain('4 screenshots 1080×2400 → 966 image tokens, batch 2, 2 new tokens');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
