// Learning from feedback on a tiny model (CPU, fp32, constrained greedy answers): a user's taps train a LoRA beside
// inference; a candidate that beats what is served on the user's held-out samples is promoted and answers the next
// request exactly as offline predict() with that adapter does; a candidate provably no better (lr 0: the base model
// itself) is rejected with both metrics logged; rollbacks; and a process killed with SIGKILL in the middle of a job
// restarts serving the same versions and redoes the job.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readDataset, writeDataset } from '../lib/data/manifest.js';
import { writeSynthDataset } from '../lib/data/synth/index.js';
import type { Sample } from '../lib/data/types.js';
import { initRandomModel } from '../lib/engine/configs.js';
import { Qwen3VL } from '../lib/engine/model.js';
import type { PromptSettings } from '../lib/processor/inputs.js';
import { predict } from '../lib/experiments/predict.js';
import { scoreRecord, summarize } from '../lib/data/records.js';
import { runTrainGlobal } from '../lib/experiments/runs.js';
import { Grounder } from '../lib/grounding/grounder.js';
import { isBetter, Personalizer, timeSplit, type Decision, type HeldOutMetrics, type PersonalizerOptions } from '../lib/personalize/personalizer.js';
import { QwenTokenizer } from '../lib/processor/tokenizer.js';
import { startServer } from '../lib/serve/server.js';

const work = mkdtempSync(join(tmpdir(), 'pigg-personalizer-'));
const child = join(resolve(import.meta.dirname), 'helpers', 'personalizer-child.mjs');
const cli = join(resolve(import.meta.dirname, '..'), 'dist', 'cli', 'index.js');
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
    // One owner per folder.
    await expect(Personalizer.open({ ...TRAINING, dir, grounder })).rejects.toThrow(`${dir} is in use by another Personalizer of this process (close it first)`);
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

  it("from 'current' continues the served version on the taps that came after its own training split", async () => {
    const killedDir = join(work, 'killed');
    await using restarted = await Grounder.load(global, GROUNDER);
    const personalizer = await Personalizer.open({ ...TRAINING, dir: killedDir, grounder: restarted, from: 'current', minNewSamples: 4 });
    const before = await personalizer.status('1');
    const pointer = JSON.parse(readFileSync(join(killedDir, 'adapters', '1', 'current.json'), 'utf8'));
    expect(pointer.version).toBe(before.version);
    for (const i of [0, 1, 2, 3]) await personalizer.feedback(tapOf(user1[i]!));
    await personalizer.idle();
    const decision = personalizer.decisions('1').at(-1)!;
    // 20 samples: the last 5 held out, 15 in the split, of which the served version had trained on the first train_end.
    expect(decision).toMatchObject({ from: `v${before.version}`, previous: before.version, samples: { total: 20, train: 15, trained: 15 - pointer.train_end, holdout: 5 } });
    expect(decision.training!.steps).toBe(10 * (15 - pointer.train_end));
    await personalizer.close();
  });

  it('over HTTP: POST /v1/feedback, GET /v1/users/:id, rollback; a user without a version yet is served by the base model', async () => {
    const httpDir = join(work, 'http');
    const personalizer = await Personalizer.open({ ...TRAINING, dir: httpDir, grounder, auto: false });
    const server = await startServer({ grounder, personalizer, port: 0 });
    try {
      const sample = user1[3]!;
      const image = `data:image/png;base64,${readFileSync(imageOf(sample)).toString('base64')}`;
      const post = (path: string, body: unknown) => fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const created = await post('/v1/feedback', { user: 'web', image, instruction: sample.instruction, tap: sample.target });
      expect(created.status).toBe(201);
      expect(await created.json()).toEqual({ object: 'feedback', id: 'feedback/web/000000', user: 'web', index: 0, samples: 1, pending: 1, scheduled: false });
      const errors: Array<[unknown, number, string, string]> = [
        [{ user: 'web', image, instruction: sample.instruction, tap: { x: sample.width, y: 1 } }, 400, 'tap.x', `tap.x ${sample.width} is outside the image: its width is ${sample.width} pixels (0 <= x < ${sample.width})`],
        [{ image, instruction: 'x', tap: { x: 1, y: 1 } }, 400, 'user', 'no user: send user, the id whose adapter learns from this tap'],
        [{ user: 'a/b', image, instruction: 'x', tap: { x: 1, y: 1 } }, 400, 'user', "user 'a/b' may hold only letters, digits and _ . @ - (at most 64, starting with a letter or digit)"],
        [{ user: 'web', image: 'aGVsbG8=', instruction: 'x', tap: { x: 1, y: 1 } }, 400, 'image', 'the image is not PNG, JPEG, WebP, GIF, TIFF, AVIF or HEIF (unknown leading bytes)'],
        [{ user: 'web', instruction: 'x', tap: { x: 1, y: 1 } }, 400, 'image', 'no image: send image as base64 or a data URI (data:image/png;base64,...)'],
        [{ user: 'web', image, instruction: '', tap: { x: 1, y: 1 } }, 400, 'instruction', 'instruction must be a non-empty string'],
        [{ user: 'web', image, instruction: 'x', tap: 3 }, 400, 'tap', 'tap must be an object {x, y} in pixels of the image'],
        [{ user: global.split('/').at(-1), image, instruction: 'x', tap: { x: 1, y: 1 } }, 400, 'user', "user 'global' is the base model's name; users name their adapters, so choose another id"],
      ];
      for (const [body, status, param, message] of errors) {
        const response = await post('/v1/feedback', body);
        expect(response.status, message).toBe(status);
        expect((await response.json()).error).toMatchObject({ param, message, type: 'invalid_request_error' });
      }
      const user = await (await fetch(`${server.url}/v1/users/web`)).json();
      expect(user).toMatchObject({ id: 'web', object: 'user', samples: 1, pending: 1, version: null, adapter: null, metrics: null, versions: [], training: false, queued: null, last_decision: null });
      expect((await fetch(`${server.url}/v1/users/nobody`)).status).toBe(404);
      expect((await (await fetch(`${server.url}/v1/users/..%2Fx`)).json()).error.param).toBe('id');
      // 'web' has feedback but no adapter: the base model answers (an unknown name would be a 404).
      const grounded = await post('/v1/ground', { user: 'web', image, instruction: sample.instruction });
      expect(grounded.status).toBe(200);
      expect((await grounded.json()).adapter).toBeNull();
      expect((await post('/v1/ground', { user: 'stranger', image, instruction: sample.instruction })).status).toBe(404);
      const rollback = await post('/v1/users/web/rollback', { version: 3 });
      expect(rollback.status).toBe(404);
      expect((await rollback.json()).error).toMatchObject({ code: 'version_not_found', message: "user 'web' has no version 3 (none promoted)" });
      expect(await (await post('/v1/users/web/rollback', { version: null })).json()).toMatchObject({ id: 'web', version: null });
      expect(personalizer.decisions('web').map((d) => d.decision)).toEqual(['rollback']);
    } finally {
      await server.close();
      await personalizer.close();
    }
  });

  it('pigg serve --feedback DIR stores taps, answers /v1/users/:id and resumes its state after a restart', async () => {
    const cliDir = join(work, 'cli');
    const args = [cli, 'serve', '--model', global, '--port', '0', '--feedback', cliDir, '--train-after', '3', '--feedback-lr', '1e-2', '--feedback-epochs', '2',
      '--max-pixels', String(IMAGE.maxPixels), '--min-pixels', String(IMAGE.minPixels), '--max-new-tokens', String(MAX_NEW), '--image-workers', '0'];
    const run = async (fn: (url: string) => Promise<void>) => {
      const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((done) => proc.on('exit', (code) => done(code)));
      try {
        await vi.waitFor(() => expect(stderr).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/), { timeout: 60_000, interval: 50 });
        expect(stderr).toContain(`feedback in ${cliDir}`);
        await fn(/listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)![1]!);
      } finally {
        proc.kill('SIGTERM');
        expect(await exited, stderr).toBe(0);
      }
      return stderr;
    };
    const stderr = await run(async (url) => {
      for (const sample of user1.slice(0, 4)) {
        const body = { user: 'cli', image: readFileSync(imageOf(sample)).toString('base64'), instruction: sample.instruction, tap: sample.target };
        const response = await fetch(`${url}/v1/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        expect(response.status).toBe(201);
      }
      // Trained after 3 taps (2 epochs on 1 sample, 2 held out): wait for the decision.
      await vi.waitFor(async () => expect((await (await fetch(`${url}/v1/users/cli`)).json()).last_decision).not.toBeNull(), { timeout: 60_000, interval: 100 });
      expect(await (await fetch(`${url}/v1/users/cli`)).json()).toMatchObject({ samples: 4, pending: 1 });
    });
    expect(stderr).toMatch(/user cli: training 2 steps on 3 samples/);
    expect(stderr).toMatch(/user cli: (promoted v1|rejected) \(candidate acc/);
    const decided = readDecisions(cliDir);
    expect(decided).toHaveLength(1);
    // Restarted: the same state from disk.
    await run(async (url) => {
      expect(await (await fetch(`${url}/v1/users/cli`)).json()).toMatchObject({ samples: 4, pending: 1, version: decided[0]!.version, last_decision: decided[0] });
    });
  });
});
