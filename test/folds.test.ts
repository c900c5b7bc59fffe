import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createKFolds, kFolds, pythonRandom, trainingFolds } from '../lib/data/folds.js';
import { register } from '../lib/cli/folds.js';

interface FoldCase {
  n: number;
  k: number;
  seed: number;
  folds: number[][];
}
const fixture = JSON.parse(readFileSync(new URL('./fixtures/folds/pigg-folds.json', import.meta.url), 'utf8')) as {
  cases: FoldCase[];
};

describe('pythonRandom matches CPython 3.11', () => {
  it('getrandbits for small and multi-word k', () => {
    const r = pythonRandom(42);
    expect([1, 7, 32, 33, 64, 100].map((k) => r.getrandbits(k))).toEqual([
      1n,
      14n,
      107420369n,
      3184935163n,
      4117511471858006928n,
      800402129360547565400942494185n,
    ]);
  });

  it('random() with seed 0', () => {
    const r = pythonRandom(0);
    expect([r.random(), r.random(), r.random()]).toEqual([0.8444218515250481, 0.7579544029403025, 0.420571580830845]);
  });

  it('negative multi-word seed uses |seed|', () => {
    const r = pythonRandom(-12345678901234567890n);
    expect(r.getrandbits(32)).toBe(2199100970n);
    expect(r.randbelow(10 ** 12)).toBe(706723110999);
  });

  it('shuffle with a 3-word seed', () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    pythonRandom(2n ** 64n + 5n).shuffle(items);
    expect(items).toEqual([4, 2, 13, 12, 14, 7, 17, 6, 0, 8, 10, 9, 5, 1, 15, 11, 3, 19, 18, 16]);
  });

  it('randbelow, including bounds above 32 bits', () => {
    const r = pythonRandom(42);
    expect([1, 2, 3, 1000, 2 ** 32, 2 ** 40 + 7].map((n) => r.randbelow(n))).toEqual([
      0, 0, 2, 281, 1051802512, 191320892468,
    ]);
    expect(() => r.randbelow(0)).toThrow(/positive/);
  });

  it('rejects a non-integer seed', () => {
    expect(() => pythonRandom(1.5)).toThrow(/seed/);
  });
});

describe('kFolds reproduces PIGG create_k_folds', () => {
  it.each(fixture.cases.map((c) => [`n=${c.n} k=${c.k} seed=${c.seed}`, c] as const))('%s', (_name, c) => {
    expect(kFolds(c.n, c.k, c.seed)).toEqual(c.folds);
  });

  it('fixture has the PIGG user sizes', () => {
    expect(fixture.cases.length).toBeGreaterThanOrEqual(19);
    expect(fixture.cases.map((c) => c.n)).toEqual(expect.arrayContaining([268, 1310, 3700, 1619]));
  });

  it('user 1 (268 samples) gives folds of 89, 89, 90', () => {
    expect(kFolds(268, 3).map((f) => f.length)).toEqual([89, 89, 90]);
  });

  it('createKFolds permutes items the same way as indices and leaves the input alone', () => {
    const items = Array.from({ length: 50 }, (_, i) => `s${i}`);
    const folds = createKFolds(items, 3, 7);
    expect(folds).toEqual(kFolds(50, 3, 7).map((f) => f.map((i) => `s${i}`)));
    expect(items[0]).toBe('s0');
  });

  it('trainingFolds concatenates the other folds', () => {
    const folds = kFolds(10, 3);
    expect(trainingFolds(folds, 1)).toEqual([...folds[0]!, ...folds[2]!]);
    expect(() => trainingFolds(folds, 3)).toThrow(/test fold/);
  });

  it('rejects bad k and n', () => {
    expect(() => kFolds(10, 0)).toThrow(/k must be/);
    expect(() => kFolds(10, 2.5)).toThrow(/k must be/);
    expect(() => kFolds(-1, 3)).toThrow(/n must be/);
  });
});

describe('pigg folds command', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  async function run(args: string[]): Promise<{ out: string; err: string; exitCode: number | undefined }> {
    let out = '';
    let err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    const program = new Command()
      .exitOverride()
      .showHelpAfterError()
      .configureOutput({ writeErr: (text) => (err += text), writeOut: (text) => (out += text) });
    register(program);
    let exitCode: number | undefined;
    try {
      await program.parseAsync(['node', 'pigg', 'folds', ...args]);
      exitCode = process.exitCode === undefined ? 0 : Number(process.exitCode);
    } catch (error) {
      exitCode = (error as { exitCode?: number }).exitCode ?? 1;
    }
    return { out, err, exitCode };
  }

  it('prints compact JSON with a newline', async () => {
    const { out, exitCode } = await run(['--n', '10', '--k', '3', '--seed', '42']);
    expect(exitCode).toBe(0);
    expect(out).toBe('[[7,3,2],[8,5,6],[9,4,0,1]]\n');
  });

  it('defaults to k=3, seed=42', async () => {
    const { out } = await run(['--n', '4']);
    expect(out).toBe('[[2],[1],[3,0]]\n');
  });

  it.each([
    [['--n', '10', '--k', '0'], /--k must be >= 1/],
    [['--n', 'ten'], /--n expects an integer/],
    [['--n', '10', '--seed', '4.2'], /--seed expects an integer/],
    [['--n', '2.5'], /--n expects an integer/],
  ])('rejects %j', async (args, message) => {
    const { err, exitCode } = await run(args);
    expect(exitCode).not.toBe(0);
    expect(err).toMatch(message);
  });
});
