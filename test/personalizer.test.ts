// Learning from feedback on a tiny model (CPU, fp32, constrained greedy answers): a user's taps train a LoRA beside
// inference; a candidate that beats what is served on the user's held-out samples is promoted and answers the next
// request exactly as offline predict() with that adapter does; a candidate provably no better (lr 0: the base model
// itself) is rejected with both metrics logged; rollbacks; and a process killed with SIGKILL in the middle of a job
// restarts serving the same versions and redoes the job.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDataset, writeDataset } from '../lib/data/manifest.js';
import { writeSynthDataset } from '../lib/data/synth.js';
import type { Sample } from '../lib/data/types.js';
import { initRandomModel } from '../lib/engine/configs.js';
import { Qwen3VL } from '../lib/engine/model.js';
import type { PromptSettings } from '../lib/experiments/inputs.js';
import { predict, scoreRecord } from '../lib/experiments/predict.js';
import { summarize } from '../lib/experiments/results.js';
import { runTrainGlobal } from '../lib/experiments/runs.js';
import { Grounder } from '../lib/grounding/grounder.js';
import { isBetter, Personalizer, timeSplit, type Decision, type HeldOutMetrics, type PersonalizerOptions } from '../lib/personalize/personalizer.js';
import { QwenTokenizer } from '../lib/processor/tokenizer.js';

const work = mkdtempSync(join(tmpdir(), 'pigg-personalizer-'));
const child = join(resolve(import.meta.dirname), 'helpers', 'personalizer-child.mjs');
const synth = join(work, 'synth');
/** The synthetic dataset with the referring labels dropped: feedback taps come without one. */
const data = join(work, 'data');
const base = join(work, 'base');
const global = join(work, 'global');
const IMAGE = { minPixels: 65536, maxPixels: 100352 };
const settings: PromptSettings = { style: 'pigg', image: IMAGE };
const MAX_NEW = 64;
const GROUNDER = { device: 'cpu', dtype: 'fp32' as const, image: IMAGE, maxNewTokens: MAX_NEW, imageWorkers: 0, constrain: 'pigg' as const };
/** Strong enough for a tiny model to fit six samples in one job (PIGG's lr 2e-5 would not move it). */
const TRAINING: Omit<PersonalizerOptions, 'dir' | 'grounder'> = {
  minNewSamples: 8,
  overrides: { learningRate: 1e-2, epochs: 10, gradientAccumulation: 1, warmupSteps: 2, weightDecay: 0, gradientCheckpointing: false },
  lora: { rank: 8, alpha: 32, dropout: 0 },
};

let user1: Sample[];
let grounder: Grounder;

beforeAll(async () => {
  await writeSynthDataset(synth, { users: 2, personal: 1, samplesPerUser: 10, seed: 5, small: true });
  const { info, samples } = await readDataset(synth);
  mkdirSync(data);
  symlinkSync(join(synth, 'images'), join(data, 'images'));
  await writeDataset(data, info, samples.map((s) => ({ ...s, referring: null })));
  user1 = (await readDataset(data)).samples.filter((s) => s.user === '1');
  // A global model trained on user 2 only, knowing nothing of user 1. Trained to a low loss (~0.3): a LoRA leaves the
  // tied embeddings and norms as they are, and on a barely trained tiny model their small logit scale holds the loss
  // of any adapter above ~1.6 (it then cannot fit even a constant answer).
  await initRandomModel('tiny', base, { seed: 3 });
  await runTrainGlobal({
    data, settings, load: { device: 'cpu', dtype: 'fp32' }, model: base, users: '2', output: global, imageWorkers: 0,
    overrides: { learningRate: 3e-3, epochs: 24, gradientAccumulation: 1, warmupSteps: 1, gradientCheckpointing: false },
  });
  grounder = await Grounder.load(global, GROUNDER);
});

afterAll(async () => {
  await grounder?.[Symbol.asyncDispose]();
  rmSync(work, { recursive: true, force: true });
});

const imageOf = (sample: Sample) => join(data, sample.image);
const tapOf = (sample: Sample) => ({ user: '1', image: imageOf(sample), instruction: sample.instruction, tap: sample.target });

/** Offline: a fresh model with the adapter attached (loadAdapter), through predict() as `pigg eval --adapter` runs it. */
async function offline(samples: Sample[], adapter: string | null): Promise<string[]> {
  const model = await Qwen3VL.load(global, { device: 'cpu', dtype: 'fp32' });
  try {
    if (adapter) await model.loadAdapter(adapter);
    const records = await predict(model, QwenTokenizer.fromDir(global), samples, data, { settings, maxNewTokens: MAX_NEW, constrain: 'pigg', batchSize: 4 });
    return records.map((r) => r.output);
  } finally {
    model.dispose();
  }
}

/** The held-out metrics of an adapter on the Grounder (null = the base model), as the personalizer computes them. */
async function metrics(g: Grounder, samples: Sample[], adapter: string | null): Promise<HeldOutMetrics> {
  const results = await g.groundSamples(samples, data, { user: adapter });
  const { accuracy, mean_l2, median_l2, n, parse_failures } = summarize(results.map((r, i) => scoreRecord(samples[i]!, r)));
  return { accuracy, mean_l2, median_l2, n, parse_failures };
}

function readDecisions(dir: string): Decision[] {
  return readFileSync(join(dir, 'decisions.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Decision);
}

describe('personalizer', () => {
  const dir = join(work, 'feedback');

  it('splits by time and ranks by accuracy, then mean L2', () => {
    expect(timeSplit(8, 0.25, 2)).toEqual({ train: 6, holdout: 2 });
    expect(timeSplit(12, 0.25, 2)).toEqual({ train: 9, holdout: 3 });
    expect(timeSplit(3, 0.25, 2)).toEqual({ train: 1, holdout: 2 });
    const m = (accuracy: number, mean_l2: number): HeldOutMetrics => ({ accuracy, mean_l2, median_l2: mean_l2, n: 4, parse_failures: 0 });
    expect(isBetter(m(0.5, 300), m(0.25, 100))).toBe(true);
    expect(isBetter(m(0.25, 100), m(0.5, 300))).toBe(false);
    expect(isBetter(m(0.5, 99), m(0.5, 100))).toBe(true);
    expect(isBetter(m(0.5, 100), m(0.5, 100))).toBe(false);
  });

  it('refuses settings that cannot work, before touching files', async () => {
    const bad = join(work, 'never');
    await expect(Personalizer.open({ dir: bad, grounder, minNewSamples: 2, minHoldout: 2 })).rejects.toThrow('minNewSamples 2 leaves no training sample after holding out 2: use at least 3');
    await expect(Personalizer.open({ dir: bad, grounder, holdout: 1 })).rejects.toThrow('holdout must be a share in (0, 1), got 1');
    await expect(Personalizer.open({ dir: bad, grounder, overrides: { epochs: 0 } })).rejects.toThrow('epochs must be an integer >= 1, got 0');
    expect(existsSync(bad)).toBe(false);
  });

  it('trains after N taps beside inference and promotes a better adapter, which the next request is served by', async () => {
    const events: string[] = [];
    const personalizer = await Personalizer.open({ ...TRAINING, dir, grounder, onEvent: (e) => events.push(e.type) });
    // Six screens, then two of them again: the held-out window (the last 2 of 8) repeats screens the user trained on.
    const order = [0, 1, 2, 3, 4, 5, 4, 5];
    const receipts = [];
    for (const i of order.slice(0, 7)) receipts.push(await personalizer.feedback(tapOf(user1[i]!)));
    expect(receipts.map((r) => [r.index, r.pending, r.scheduled])).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => [i, i + 1, false]));
    expect(personalizer.running).toBeNull();
    const last = await personalizer.feedback(tapOf(user1[5]!));
    expect(last).toMatchObject({ id: 'feedback/1/000007', samples: 8, pending: 8, scheduled: true });

    // Inference runs while the job trains (the adapter is aside: these answers are the base model's).
    const during = await grounder.ground(imageOf(user1[0]!), user1[0]!.instruction);
    await personalizer.idle();
    expect(during.adapter).toBeNull();
    expect(events).toEqual(expect.arrayContaining(['feedback', 'queued', 'started', 'step', 'evaluated', 'decision']));

    const [decision] = personalizer.decisions('1');
    expect(decision).toMatchObject({
      user: '1', decision: 'promoted', version: 1, previous: null, from: 'base',
      samples: { total: 8, train: 6, trained: 6, holdout: 2, holdout_from: 6 },
      training: { steps: 60, epochs: 10, learning_rate: 1e-2 },
    });
    expect(isBetter(decision!.candidate!, decision!.baseline!)).toBe(true);
    // The baseline was the base model on the two held-out taps, the candidate v1 on the same two.
    const heldOut = [user1[4]!, user1[5]!];
    expect(decision!.baseline).toEqual(await metrics(grounder, heldOut, null));
    expect(decision!.candidate).toEqual(await metrics(grounder, heldOut, '1'));
    expect(readDecisions(dir)).toEqual([decision]);
    expect(existsSync(join(dir, 'jobs', '1.json'))).toBe(false);
    expect(existsSync(join(dir, 'adapters', '1', 'candidate'))).toBe(false);

    const status = await personalizer.status('1');
    expect(status).toMatchObject({ user: '1', samples: 8, pending: 0, version: 1, versions: [1], training: false, queued: null, metrics: decision!.candidate });
    expect(status.adapter).toBe(join(dir, 'adapters', '1', 'v1'));
    expect(JSON.parse(readFileSync(join(dir, 'adapters', '1', 'current.json'), 'utf8'))).toMatchObject({ user: '1', version: 1, path: 'v1', train_end: 6, samples: 8 });
    expect(personalizer.adapterFor('1')).toBe('1');
    expect(personalizer.adapterFor('2')).toBeNull();

    // The next request with the user's id is answered by v1, exactly as offline predict with v1 attached.
    const served = await Promise.all(user1.slice(0, 6).map((s) => grounder.ground(imageOf(s), s.instruction, { user: personalizer.adapterFor('1') })));
    expect(served.every((r) => r.adapter === '1')).toBe(true);
    expect(served.map((r) => r.text)).toEqual(await offline(user1.slice(0, 6), status.adapter));
    // ... and v1 does change the answers (else the comparison above would prove nothing).
    expect(served.map((r) => r.text)).not.toEqual(await offline(user1.slice(0, 6), null));
    await personalizer.close();
  });

  it('does not promote a candidate that is no better (lr 0: the base model itself), logging both metrics', async () => {
    const personalizer = await Personalizer.open({ ...TRAINING, dir, grounder, minNewSamples: 4, overrides: { ...TRAINING.overrides, learningRate: 0 } });
    expect((await personalizer.status('1')).version).toBe(1);
    // Four more taps on screens v1 trained on; the held-out window is now the last 3 of 12 (screens 1, 2, 3).
    for (const i of [0, 1, 2, 3]) await personalizer.feedback(tapOf(user1[i]!));
    await personalizer.idle();
    const decision = personalizer.decisions('1').at(-1)!;
    expect(decision).toMatchObject({ decision: 'rejected', version: 1, previous: 1, samples: { total: 12, train: 9, holdout: 3, holdout_from: 9 }, training: { learning_rate: 0 } });
    expect(decision.reason).toBe('not better than version 1 on 3 held-out samples');
    const heldOut = [user1[1]!, user1[2]!, user1[3]!];
    // The candidate is the base model exactly (its LoRA B stays zero), the baseline is v1: both measured again here.
    expect(decision.candidate).toEqual(await metrics(grounder, heldOut, null));
    expect(decision.baseline).toEqual(await metrics(grounder, heldOut, '1'));
    expect(isBetter(decision.candidate!, decision.baseline!)).toBe(false);
    expect(isBetter(decision.baseline!, decision.candidate!)).toBe(true);

    expect(readDecisions(dir).map((d) => [d.decision, d.version])).toEqual([['promoted', 1], ['rejected', 1]]);
    const status = await personalizer.status('1');
    expect(status).toMatchObject({ samples: 12, pending: 0, version: 1, versions: [1] });
    expect(existsSync(join(dir, 'adapters', '1', 'v2'))).toBe(false);
    expect(existsSync(join(dir, 'adapters', '1', 'candidate'))).toBe(false);
    expect(grounder.adapters().map((a) => [a.name, a.path])).toEqual([['1', join(dir, 'adapters', '1', 'v1')]]);
    await personalizer.close();
  });

  it('rolls back to the base model and to a kept version', async () => {
    const personalizer = await Personalizer.open({ ...TRAINING, dir, grounder, auto: false });
    const toBase = await personalizer.rollback('1', null);
    expect(toBase).toMatchObject({ version: null, adapter: null, versions: [1], samples: 12 });
    expect(personalizer.adapterFor('1')).toBeNull();
    expect(grounder.adapters()).toEqual([]);
    await expect(personalizer.rollback('1', 7)).rejects.toThrow("user '1' has no version 7 (versions: 1)");
    const back = await personalizer.rollback('1', 1);
    expect(back).toMatchObject({ version: 1, metrics: personalizer.decisions('1')[0]!.candidate });
    expect(grounder.adapters().map((a) => a.name)).toEqual(['1']);
    expect(readDecisions(dir).slice(2).map((d) => [d.decision, d.previous, d.version])).toEqual([['rollback', 1, null], ['rollback', null, 1]]);
    // A rollback is not a training decision: pending counts from the last one.
    expect(back.pending).toBe(0);
    await personalizer.close();
  });

  it('restarts after kill -9 in the middle of a job: the same versions are served and the job is redone', async () => {
    const killedDir = join(work, 'killed');
    const options = { dir: killedDir, model: global, data, user: '1', order: [0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 6, 7, 8, 9], first: 8, second: 8, grounder: GROUNDER, personalizer: TRAINING };
    const optionsFile = join(work, 'child.json');
    writeFileSync(optionsFile, JSON.stringify(options));
    const proc = spawn(process.execPath, [child, optionsFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const closed = new Promise<void>((done) => proc.on('close', () => done()));
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('training\n')) proc.kill('SIGKILL');
    });
    await closed;
    expect(out, err).toBe('decided promoted 1\ntraining\n');
    expect(readDecisions(killedDir).map((d) => [d.decision, d.version])).toEqual([['promoted', 1]]);
    expect(JSON.parse(readFileSync(join(killedDir, 'jobs', '1.json'), 'utf8'))).toMatchObject({ user: '1', total: 16 });

    // A new process (a new Grounder on the same files).
    await using restarted = await Grounder.load(global, GROUNDER);
    const personalizer = await Personalizer.open({ ...TRAINING, dir: killedDir, grounder: restarted });
    expect(restarted.adapters().map((a) => [a.name, a.path])).toEqual([['1', join(killedDir, 'adapters', '1', 'v1')]]);
    const status = await personalizer.status('1');
    expect(status).toMatchObject({ samples: 16, pending: 8, version: 1, versions: [1] });
    expect(status.training || status.queued === 0).toBe(true);
    expect(existsSync(join(killedDir, 'adapters', '1', 'candidate'))).toBe(false);
    // Served by v1 while the job is redone: the answer of offline predict with v1.
    const sample = user1[6]!;
    const answer = await restarted.ground(imageOf(sample), sample.instruction, { user: personalizer.adapterFor('1') });
    expect(answer.adapter).toBe('1');
    expect([answer.text]).toEqual(await offline([sample], join(killedDir, 'adapters', '1', 'v1')));

    await personalizer.idle();
    const redone = personalizer.decisions('1').at(-1)!;
    expect(redone).toMatchObject({ resumed: true, previous: 1, samples: { total: 16, train: 12, holdout: 4, holdout_from: 12 } });
    expect(['promoted', 'rejected']).toContain(redone.decision);
    expect(readDecisions(killedDir)).toHaveLength(2);
    expect(existsSync(join(killedDir, 'jobs', '1.json'))).toBe(false);
    expect((await personalizer.status('1')).pending).toBe(0);
    await personalizer.close();
  });
});
