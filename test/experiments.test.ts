// The experiment runners end to end on CPU: a small synthetic dataset and a tiny random model through vanilla
// evaluation, the global fine-tune and the personalized K-fold, checking every result file against the metrics
// recomputed from its out.json, the folds against `pigg folds`, and a killed-and-resumed run against an
// uninterrupted one.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSynthDataset } from '../lib/data/synth/index.js';
import { initRandomModel } from '../lib/engine/configs.js';
import { kFolds } from '../lib/data/folds.js';
import { runEval, runPersonalize, runTrainGlobal } from '../lib/experiments/runs.js';
import { summarize, type EvalRecord } from '../lib/data/records.js';
import { userSummary, type FoldMetrics } from '../lib/data/metrics.js';
import type { PromptSettings } from '../lib/processor/inputs.js';

const root = resolve(import.meta.dirname, '..');
const cli = join(root, 'dist', 'cli', 'index.js');
const work = mkdtempSync(join(tmpdir(), 'pigg-experiments-'));
const data = join(work, 'data');
const base = join(work, 'base');
const settings: PromptSettings = { style: 'pigg', image: { minPixels: 65536, maxPixels: 100352 } };
const load = { device: 'cpu', dtype: 'fp32' as const };
const personalFlags = ['--lr', '2e-3', '--epochs', '1', '--grad-accum', '2', '--warmup', '1', '--max-new-tokens', '6', '--max-pixels', '100352', '--save-every', '1'];

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

beforeAll(async () => {
  await writeSynthDataset(data, { users: 3, personal: 1, samplesPerUser: 9, seed: 3, small: true });
  await initRandomModel('tiny', base, { seed: 1 });
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('experiments', () => {
  it('evaluates, fine-tunes and personalizes with result files that agree with their records', async () => {
    const results = join(work, 'results');
    const vanilla = await runEval({ data, settings, load, model: base, users: ['1'], name: 'vanilla', out: results, maxNewTokens: 6, batchSize: 3 });
    const records = readJson<EvalRecord[]>(join(results, 'vanilla', 'user_1', 'out.json'));
    expect(records).toHaveLength(9);
    for (const r of records) {
      expect(Object.keys(r).sort()).toEqual(['gt', 'hit', 'id', 'l2', 'output', 'pred', 'referring']);
      expect(r.hit).toBe(r.l2 !== null && r.l2 <= 140);
    }
    expect(readJson(join(results, 'vanilla', 'user_1', 'summary.json'))).toEqual(summarize(records));
    expect(vanilla.overall).toEqual(summarize(records));
    expect(readFileSync(join(results, 'vanilla', 'user_1', 'results.txt'), 'utf8')).toContain(`n: 9`);

    const global = join(work, 'global');
    await runTrainGlobal({ data, settings, load, model: base, users: '2-3', output: global, overrides: { learningRate: 3e-3, epochs: 1, gradientAccumulation: 3, warmupSteps: 1 } });
    expect(existsSync(join(global, 'model.safetensors'))).toBe(true);
    expect(existsSync(`${global}.state`)).toBe(false);
    const log = readFileSync(`${global}.log.jsonl`, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(log.map((entry) => entry.step)).toEqual([1, 2, 3, 4, 5, 6]);  // 18 samples, accumulation 3
    for (const entry of log) expect(Object.keys(entry)).toEqual(expect.arrayContaining(['step', 'loss', 'lr', 'grad_norm', 'tokens_per_s', 'rss_bytes']));

    const personalized = await runPersonalize({
      data, settings, load, model: global, users: ['1'], k: 3, out: results, checkpoints: join(work, 'ckpt'),
      overrides: { learningRate: 2e-3, epochs: 1, gradientAccumulation: 2, warmupSteps: 1 }, maxNewTokens: 6, batchSize: 3,
    });
    const folds: FoldMetrics[] = [];
    for (let fold = 0; fold < 3; fold++) {
      const dir = join(results, 'personalized', 'user_1', `fold_${fold}`);
      const foldRecords = readJson<EvalRecord[]>(join(dir, 'out.json'));
      expect(foldRecords).toHaveLength(3);
      expect(readJson(join(dir, 'summary.json'))).toEqual(summarize(foldRecords));
      folds.push(summarize(foldRecords));
    }
    const userFile = readJson<Record<string, unknown>>(join(results, 'personalized', 'user_1', 'user_1_summary.json'));
    expect(userFile).toMatchObject(userSummary('1', folds));
    expect(personalized.users['1'].avg_accuracy).toBe(userSummary('1', folds).avg_accuracy);

    // The folds are PIGG's, exactly as `pigg folds` prints them.
    const printed = JSON.parse(execFileSync(process.execPath, [cli, 'folds', '--n', '9', '--k', '3', '--seed', '42'], { encoding: 'utf8' }));
    expect(readJson<{ folds: number[][] }>(join(results, 'personalized', 'user_1', 'folds.json')).folds).toEqual(printed);
    expect(printed).toEqual(kFolds(9, 3, 42));
  });

  it('resumes a killed personalize run and ends with the results of an uninterrupted one', async () => {
    const args = (out: string) => [cli, 'personalize', '--model', base, '--data', data, '--users', '1', '--out', join(out, 'results'), '--checkpoints', join(out, 'ckpt'), ...personalFlags];
    const straight = join(work, 'straight');
    execFileSync(process.execPath, args(straight), { stdio: 'pipe' });

    const killed = join(work, 'killed');
    const state = join(killed, 'ckpt', 'personalized', 'user_1', 'fold_1.state', 'trainer_state.json');
    const child = spawn(process.execPath, args(killed), { stdio: 'ignore' });
    const exited = new Promise((done) => child.on('exit', done));
    // Kill as soon as the second fold has saved a resumable state (fold 0 finished, fold 1 part-trained).
    for (let waited = 0; !existsSync(state) && waited < 60_000; waited += 20) await new Promise((done) => setTimeout(done, 20));
    expect(existsSync(state)).toBe(true);
    child.kill('SIGKILL');
    await exited;
    expect(existsSync(join(killed, 'results', 'personalized', 'user_1', 'fold_0', 'out.json'))).toBe(true);
    expect(existsSync(join(killed, 'results', 'personalized', 'user_1', 'fold_2', 'out.json'))).toBe(false);

    execFileSync(process.execPath, args(killed), { stdio: 'pipe' });
    for (let fold = 0; fold < 3; fold++) {
      const file = (dir: string) => join(dir, 'results', 'personalized', 'user_1', `fold_${fold}`, 'out.json');
      expect(readJson(file(killed))).toEqual(readJson(file(straight)));
    }
    expect(readJson(join(killed, 'results', 'personalized', 'user_1', 'user_1_summary.json')))
      .toEqual(readJson(join(straight, 'results', 'personalized', 'user_1', 'user_1_summary.json')));
  });

  it('rejects bad input with one clear message', async () => {
    const run = (extra: string[]) => {
      try {
        execFileSync(process.execPath, [cli, ...extra], { stdio: 'pipe', encoding: 'utf8' });
        return { status: 0, stderr: '' };
      } catch (error) {
        const e = error as { status: number; stderr: string };
        return { status: e.status, stderr: e.stderr };
      }
    };
    const cases: Array<[string[], RegExp]> = [
      [['eval', '--model', base, '--data', join(work, 'nope'), '--users', '1'], /dataset .*nope does not exist/],
      [['eval', '--model', base, '--data', data, '--users', '42'], /no user of .* matches '42'/],
      [['eval', '--model', data, '--data', data, '--users', '1'], /is not a model folder \(no config\.json\)/],
      [['personalize', '--model', base, '--data', data, '--users', '1', '--fold', '3'], /--fold 3 must be in \[0, 3\)/],
      [['eval', '--model', base, '--data', data, '--users', '1', '--batch', 'x'], /--batch expects an integer/],
    ];
    for (const [argv, message] of cases) {
      const { status, stderr } = run(argv);
      expect(status).toBeGreaterThan(0);
      expect(status).toBeLessThan(128);
      expect(stderr.trim().split('\n')[0]).toMatch(message);
    }
  });
});
