// The engine's host tensor cache (native/cpu_allocator.*): it serves libtorch's CPU tensors from freed blocks,
// which must change no number, keep no more than its limit, and go back to the system when a model is released.
// Each setting of PIGG_CPU_CACHE_MB runs in its own process, since the cache is installed when the addon loads.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const MODEL = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/models/tiny-untied/', import.meta.url));
const HELPER = fileURLToPath(new URL('./helpers/host-cache-run.mjs', import.meta.url));

interface HostCache { live: number; cached: number; limit: number; hits: number; misses: number }
interface Run { losses: number[]; gradNorms: number[]; afterSteps: { hostCache?: HostCache }; afterDispose: { hostCache?: HostCache } }

function run(cacheMb?: string): Run {
  const env = { ...process.env };
  delete env.PIGG_CPU_CACHE_MB;
  if (cacheMb !== undefined) env.PIGG_CPU_CACHE_MB = cacheMb;
  const child = spawnSync(process.execPath, [HELPER, join(MODEL)], { encoding: 'utf8', env, timeout: 120_000 });
  expect(child.status, child.stderr).toBe(0);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as Run;
}

describe('host tensor cache', () => {
  it('serves training steps from freed blocks with the same numbers as the system allocator, and empties on release', () => {
    const cached = run();
    const system = run('0');
    // Bit-identical: reused memory changes nothing a kernel computes.
    expect(cached.losses).toEqual(system.losses);
    expect(cached.gradNorms).toEqual(system.gradNorms);
    expect(cached.losses.every(Number.isFinite)).toBe(true);

    const steps = cached.afterSteps.hostCache!;
    expect(steps.hits).toBeGreaterThan(0);
    expect(steps.live).toBeGreaterThan(0); // the weights, moments and gradients are in its blocks
    expect(steps.cached).toBeLessThanOrEqual(steps.limit);
    // Default limit: an eighth of the machine's memory, at most 2 GiB.
    expect(steps.limit).toBeGreaterThan(0);
    expect(steps.limit).toBeLessThanOrEqual(2 ** 31);
    expect(cached.afterDispose.hostCache!.cached).toBe(0);
    expect(cached.afterDispose.hostCache!.live).toBeLessThan(steps.live);

    // 0 leaves libtorch's allocator in place: there is no cache to report.
    expect(system.afterSteps.hostCache).toBeUndefined();
  });

  it('keeps no more freed memory than PIGG_CPU_CACHE_MB', () => {
    const small = run('1');
    const cache = small.afterSteps.hostCache!;
    expect(cache.limit).toBe(1024 * 1024);
    expect(cache.cached).toBeLessThanOrEqual(1024 * 1024);
    expect(small.losses).toEqual(run('0').losses);
  });
});
