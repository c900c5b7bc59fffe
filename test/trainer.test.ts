// The native trainer against hand-computed references on the tiny fixture models (CPU, fp32 unless noted):
// frozen parameters, AdamW (torch's formula, HF's decay grouping), clipping, schedules (transformers'
// get_*_schedule_with_warmup), gradient accumulation, bf16 update modes, LoRA (peft layout, merge), save/load,
// resume, overfitting, and gradient checkpointing (same gradients, lower peak memory).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qwen3VL, type NamedTensors } from '../lib/engine/model.js';
import { native } from '../lib/engine/native.js';
import type { Trainer, TrainerOptions } from '../lib/engine/trainer.js';
import { readSafetensors, toFloat64, type HostTensor } from '../lib/safetensors.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/', import.meta.url));
const MODELS = join(FIXTURE, 'models');
const UNTIED = join(MODELS, 'tiny-untied');
const TIED = join(MODELS, 'tiny-tied');
const UNTIED_BF16 = join(MODELS, 'tiny-untied-bf16');
const HELPER = fileURLToPath(new URL('./helpers/train-peak-rss.mjs', import.meta.url));
const INPUT_NAMES = ['input_ids', 'attention_mask', 'labels', 'pixel_values', 'image_grid_thw'];

let root: string;
let dirCount = 0;
const scratch = (label: string) => join(root, `${label}-${dirCount++}`);

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'pigg-trainer-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

/** A fixture case's training batch (input_ids, attention_mask, labels and the image inputs when present). */
function batchOf(caseName: string): NamedTensors {
  const inputs = readSafetensors(join(FIXTURE, 'cases', caseName, 'inputs.safetensors'));
  const out: NamedTensors = {};
  for (const name of INPUT_NAMES) {
    const tensor = inputs.get(name);
    if (tensor) out[name] = tensor;
  }
  return out;
}

const A = batchOf('a_single_image'); // batch 1, one image, 8 supervised tokens
const B = batchOf('b_batch2_rightpad'); // batch 2, right padding, images (same config as the untied model)
const C = batchOf('c_text_only');

/** Case a with only its last `keep` supervised tokens left (a fourth, different micro-batch). */
function withFewerLabels(batch: NamedTensors, keep: number): NamedTensors {
  const labels = batch.labels.data as BigInt64Array;
  const out = new BigInt64Array(labels);
  let seen = 0;
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] === -100n) continue;
    if (++seen > keep) out[i] = -100n;
  }
  return { ...batch, labels: { ...batch.labels, data: out } };
}

/** Supervised targets of a batch: labels shifted left, so each row's first label is never a target. */
function supervised(batch: NamedTensors): number {
  const [rows, length] = batch.labels.shape;
  const labels = batch.labels.data as BigInt64Array;
  let count = 0;
  for (let r = 0; r < rows; r++) for (let i = 1; i < length; i++) if (labels[r * length + i] !== -100n) count++;
  return count;
}

/** Every tensor of a saved checkpoint folder (single file or shards). */
function savedWeights(dir: string): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort()) {
    for (const [name, tensor] of readSafetensors(join(dir, file))) out.set(name, tensor);
  }
  return out;
}

const FIXTURE_WEIGHTS = new Map<string, Map<string, HostTensor>>();
function fixtureWeights(dir: string): Map<string, HostTensor> {
  if (!FIXTURE_WEIGHTS.has(dir)) FIXTURE_WEIGHTS.set(dir, savedWeights(dir));
  return FIXTURE_WEIGHTS.get(dir)!;
}

function sameBits(a: HostTensor, b: HostTensor): boolean {
  if (a.dtype !== b.dtype || a.data.length !== b.data.length) return false;
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  return Buffer.compare(Buffer.from(x), Buffer.from(y)) === 0;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

function maxAbs(a: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]));
  return max;
}

async function withModel<T>(dir: string, fn: (model: Qwen3VL) => Promise<T>, dtype: 'fp32' | 'bf16' = 'fp32'): Promise<T> {
  const model = await Qwen3VL.load(dir, { dtype });
  try {
    return await fn(model);
  } finally {
    model.dispose();
  }
}

async function logitsOf(model: Qwen3VL, batch: NamedTensors): Promise<Float32Array> {
  const { labels: _labels, ...inputs } = batch;
  return (await model.forward(inputs, { outputs: ['logits'] })).logits.data as Float32Array;
}

// transformers' Trainer.get_decay_parameter_names: no decay for biases and norm weights (LayerNorm modules are
// the vision norm1/norm2/merger norms, which the name patterns below also cover).
const NO_DECAY = [/bias/, /layernorm/, /rmsnorm/, /(?:^|\.)norm(?:$|\.)/, /_norm(?:$|\.)/, /(?:^|\.)norm[12](?:$|\.)/];
const decays = (name: string) => !NO_DECAY.some((pattern) => pattern.test(name.toLowerCase()));

interface AdamState {
  w: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** torch.optim.AdamW (single-tensor path) in float64, the weight rounded to fp32 after each step as stored. */
function adamwStep(s: AdamState, grad: ArrayLike<number>, scale: number, lr: number, weightDecay: number, step: number, eps = 1e-8): void {
  const b1 = 0.9, b2 = 0.999;
  const stepSize = lr / (1 - b1 ** step);
  const c2 = Math.sqrt(1 - b2 ** step);
  for (let i = 0; i < s.w.length; i++) {
    const g = grad[i] * scale;
    let w = s.w[i] * (1 - lr * weightDecay);
    s.m[i] = b1 * s.m[i] + (1 - b1) * g;
    s.v[i] = b2 * s.v[i] + (1 - b2) * g * g;
    w -= (stepSize * s.m[i]) / (Math.sqrt(s.v[i]) / c2 + eps);
    s.w[i] = Math.fround(w);
  }
}

function newAdamState(weights: HostTensor): AdamState {
  const w = toFloat64(weights);
  return { w, m: new Float64Array(w.length), v: new Float64Array(w.length) };
}

function globalNorm(grads: NamedTensors): number {
  let sum = 0;
  for (const tensor of Object.values(grads)) for (const g of tensor.data as Float32Array) sum += g * g;
  return Math.sqrt(sum);
}

/** Largest |x - ref| in units of the fp32 spacing at max(|ref|, floor), so tiny weights get a sane scale. */
function maxUlpError(actual: HostTensor, reference: Float64Array, floor = 1e-3): number {
  const x = toFloat64(actual);
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(reference[i]), floor))) - 23);
    worst = Math.max(worst, Math.abs(x[i] - reference[i]) / ulp);
  }
  return worst;
}

const BASE: TrainerOptions = { learningRate: 1e-3, warmupSteps: 0, schedule: 'constant', weightDecay: 0.01, maxGradNorm: 0 };

describe('frozen parameters', () => {
  it('vision tower and mergers get no gradient and stay bit-identical (default setup)', async () => {
    const original = fixtureWeights(UNTIED);
    const dir = scratch('frozen');
    await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ ...BASE, learningRate: 1e-2 });
      const { parameters } = await trainer.info();
      expect(parameters.some((n) => n.startsWith('model.visual.'))).toBe(false);
      expect(parameters).toContain('model.language_model.embed_tokens.weight');
      expect(parameters).toContain('lm_head.weight');
      await expect(trainer.gradients(A, ['model.visual.blocks.0.attn.qkv.weight'])).rejects.toThrow(/not trainable/);
      await expect(trainer.gradients(A, ['model.visual.merger.linear_fc1.weight'])).rejects.toThrow(/not trainable/);
      for (const batch of [A, B, A]) await trainer.step(batch);
      await trainer.save(dir);
      const saved = savedWeights(dir);
      let frozen = 0;
      for (const [name, tensor] of original) {
        if (name.startsWith('model.visual.')) {
          expect(sameBits(saved.get(name)!, tensor), name).toBe(true);
          frozen++;
        } else {
          expect(sameBits(saved.get(name)!, tensor), `${name} should have trained`).toBe(false);
        }
      }
      expect(frozen).toBeGreaterThan(50);
    });
  });

  it('lastLayers=1 (embeddings off) trains only the last layer, the final norm and the head', async () => {
    const original = fixtureWeights(UNTIED);
    const dir = scratch('last1');
    await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ ...BASE, learningRate: 1e-2, trainable: { lastLayers: 1, embeddings: false } });
      const { parameters } = await trainer.info();
      const trains = (name: string) =>
        name.startsWith('model.language_model.layers.3.') || name === 'model.language_model.norm.weight' || name === 'lm_head.weight';
      expect(parameters.length).toBeGreaterThan(0);
      for (const name of parameters) expect(trains(name), name).toBe(true);
      await expect(trainer.gradients(A, ['model.language_model.layers.2.mlp.up_proj.weight'])).rejects.toThrow(/not trainable/);
      await expect(trainer.gradients(A, ['model.language_model.embed_tokens.weight'])).rejects.toThrow(/not trainable/);
      for (const batch of [A, C]) await trainer.step(batch);
      await trainer.save(dir);
      const saved = savedWeights(dir);
      for (const [name, tensor] of original) expect(sameBits(saved.get(name)!, tensor), name).toBe(!trains(name));
    });
  });
});

describe('AdamW against a hand-computed reference', () => {
  // Two optimizer steps (a, then c): gradients taken with trainer.gradients at the current weights, the update
  // computed here in float64 with torch's AdamW formula and HF's decay grouping, compared with the saved weights.
  async function twoSteps(maxGradNorm: number) {
    const original = fixtureWeights(UNTIED);
    return withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ ...BASE, maxGradNorm });
      const names = (await trainer.info()).parameters;
      const states = new Map(names.map((n) => [n, newAdamState(original.get(n)!)]));
      const saved: Map<string, HostTensor>[] = [];
      const norms: number[] = [];
      const reports = [];
      const gradsSeen: Float32Array[] = []; // of the decayed q_proj weight, for the sensitivity check
      for (const [k, batch] of [A, C].entries()) {
        const grads = await trainer.gradients(batch, names);
        gradsSeen.push(grads['model.language_model.layers.0.self_attn.q_proj.weight'].data as Float32Array);
        const norm = globalNorm(grads);
        const scale = maxGradNorm > 0 ? Math.min(1, maxGradNorm / (norm + 1e-6)) : 1;
        for (const name of names) adamwStep(states.get(name)!, grads[name].data as Float32Array, scale, 1e-3, decays(name) ? 0.01 : 0, k + 1);
        reports.push(await trainer.step(batch));
        norms.push(norm);
        const dir = scratch('adamw');
        await trainer.save(dir);
        saved.push(savedWeights(dir));
      }
      return { names, states, saved, norms, reports, gradsSeen };
    });
  }

  for (const clip of [0, 0.5]) {
    it(`matches torch AdamW with weight decay 0.01 (${clip ? `clipping at ${clip}` : 'no clipping'})`, async () => {
      const { names, states, saved, norms, reports, gradsSeen } = await twoSteps(clip);
      for (const [k, report] of reports.entries()) {
        expect(report.gradNorm).toBeCloseTo(norms[k], 4);
        expect(Math.abs(report.gradNorm - norms[k]) / norms[k]).toBeLessThan(1e-5);
      }
      if (clip) expect(Math.min(...norms)).toBeGreaterThan(4 * clip); // clipping really acts
      const decayed = 'model.language_model.layers.0.self_attn.q_proj.weight';
      const normWeight = 'model.language_model.layers.1.input_layernorm.weight';
      expect(decays(decayed)).toBe(true);
      expect(decays(normWeight)).toBe(false);
      expect(decays('model.language_model.layers.1.self_attn.k_norm.weight')).toBe(false);
      expect(decays('model.language_model.norm.weight')).toBe(false);
      const after = saved[1];
      // Every trainable tensor within a few fp32 ulps of the reference after two steps.
      let worst = 0;
      for (const name of names) worst = Math.max(worst, maxUlpError(after.get(name)!, states.get(name)!.w));
      expect(worst).toBeLessThan(8);
      // The check is sharp enough to see the decay (2e-7 on a 0.02 weight) and the clipping.
      const q = states.get(decayed)!;
      const original = toFloat64(fixtureWeights(UNTIED).get(decayed)!);
      const moved = maxAbsDiff(toFloat64(after.get(decayed)!), original);
      expect(moved).toBeGreaterThan(1.5e-3);
      expect(moved).toBeLessThan(2.5e-3);
      expect(maxUlpError(after.get(normWeight)!, states.get(normWeight)!.w)).toBeLessThan(8);
      expect(q.w.length).toBe(original.length);
      expect(maxUlpError(after.get(decayed)!, q.w)).toBeLessThan(8);
      // Without the decay term the same reference misses by far more than the tolerance.
      const withoutDecay = newAdamState(fixtureWeights(UNTIED).get(decayed)!);
      for (const [k, grads] of gradsSeen.entries()) {
        const scale = clip > 0 ? Math.min(1, clip / (norms[k] + 1e-6)) : 1;
        adamwStep(withoutDecay, grads, scale, 1e-3, 0, k + 1);
      }
      expect(maxUlpError(after.get(decayed)!, withoutDecay.w)).toBeGreaterThan(50);
    });
  }

  it('clipping changes the second step exactly as clip_grad_norm_ predicts', async () => {
    const free = await twoSteps(0);
    const clipped = await twoSteps(0.5);
    const name = 'model.language_model.layers.2.mlp.down_proj.weight';
    const diff = maxAbsDiff(toFloat64(free.saved[1].get(name)!), toFloat64(clipped.saved[1].get(name)!));
    expect(diff).toBeGreaterThan(1e-6); // well above the few-ulp agreement with the references
    // The clipped run misses the unclipped reference by far more than it misses its own.
    expect(maxUlpError(clipped.saved[1].get(name)!, free.states.get(name)!.w)).toBeGreaterThan(50);
    expect(maxUlpError(clipped.saved[1].get(name)!, clipped.states.get(name)!.w)).toBeLessThan(8);
  });
});

/** A python with torch for the optimizer reference: the project's .venv (where the build's torch comes from), else python3. */
function torchPython(): string | null {
  const repoRoot = fileURLToPath(new URL('..', import.meta.url));
  for (const python of [join(repoRoot, '.venv', 'bin', 'python'), 'python3']) {
    if (python.includes('/') && !existsSync(python)) continue;
    if (spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return python;
  }
  return null;
}

describe('AdamW is torch.optim.AdamW(fused=True), transformers\' default optimizer', () => {
  // Three steps (a, c, a) with weight decay on the tiny model; the gradients pigg computed at each step are handed
  // to torch's fused AdamW (test/helpers/fused-adamw.py) starting from the same weights. Bit-identical results.
  const python = torchPython();
  const cases: Array<{ mode: 'fp32' | 'pure' | 'master'; dtype: 'fp32' | 'bf16' }> = [
    { mode: 'fp32', dtype: 'fp32' },
    { mode: 'pure', dtype: 'bf16' },
    { mode: 'master', dtype: 'bf16' },
  ];
  for (const { mode, dtype } of cases) {
    it.skipIf(!python)(`${mode === 'fp32' ? 'fp32 weights' : `bf16 weights, update mode ${mode}`}: bit-identical after 3 steps`, async () => {
      const dir = scratch(`fused-${mode}`);
      const job = { initial: join(dir, 'initial', 'model.safetensors'), grads: [] as string[], out: join(dir, 'expected.safetensors'),
        names: [] as string[], no_decay: [] as string[], mode, lr: 1e-3, weight_decay: 0.1 };
      await withModel(UNTIED, async (model) => {
        const trainer = await model.createTrainer({ ...BASE, weightDecay: job.weight_decay, updateMode: mode === 'fp32' ? 'master' : mode });
        job.names = (await trainer.info()).parameters;
        job.no_decay = job.names.filter((name) => !decays(name));
        await trainer.save(join(dir, 'initial'));
        for (const [k, batch] of [A, C, A].entries()) {
          const path = join(dir, `grads-${k}.safetensors`);
          await native().writeTensors(path, await trainer.gradients(batch, job.names));
          job.grads.push(path);
          await trainer.step(batch);
        }
        await trainer.save(join(dir, 'final'));
      }, dtype);
      writeFileSync(join(dir, 'job.json'), JSON.stringify(job));
      const run = spawnSync(python!, [fileURLToPath(new URL('./helpers/fused-adamw.py', import.meta.url)), join(dir, 'job.json')], { encoding: 'utf8' });
      expect(run.status, run.stderr).toBe(0);
      const expected = readSafetensors(job.out);
      const initial = savedWeights(join(dir, 'initial'));
      const final = savedWeights(join(dir, 'final'));
      for (const name of job.names) {
        expect(final.get(name)!.dtype, name).toBe(dtype === 'bf16' ? 'BF16' : 'F32');
        expect(sameBits(final.get(name)!, expected.get(name)!), name).toBe(true);
      }
      // Sharp: the weights really moved (in pure bf16 a norm weight of 1.0 keeps still: 1e-3 is below half its ulp).
      const moved = job.names.filter((name) => !sameBits(final.get(name)!, initial.get(name)!));
      expect(moved.length).toBeGreaterThanOrEqual(mode === 'pure' ? job.names.length - job.no_decay.length : job.names.length);
    });
  }
});

describe('learning-rate schedules (transformers get_*_schedule_with_warmup)', () => {
  async function collectRates(options: TrainerOptions, steps: number): Promise<{ before: number; rates: number[]; after: number }> {
    return withModel(TIED, async (model) => {
      const trainer = await model.createTrainer({ ...options, maxGradNorm: 0 });
      const before = (await trainer.info()).learningRate;
      const rates: number[] = [];
      for (let k = 0; k < steps; k++) rates.push((await trainer.step(C)).learningRate);
      return { before, rates, after: (await trainer.info()).learningRate };
    });
  }

  it('linear warmup and decay: step 0 has lr 0, peak at the end of warmup, 0 at totalSteps', async () => {
    const lr = 3e-3, warmup = 3, total = 10;
    const linear = (k: number) => (k < warmup ? lr * (k / Math.max(1, warmup)) : lr * Math.max(0, (total - k) / Math.max(1, total - warmup)));
    const { before, rates, after } = await collectRates({ learningRate: lr, warmupSteps: warmup, totalSteps: total, schedule: 'linear' }, 12);
    expect(before).toBe(0);
    expect(rates).toEqual(Array.from({ length: 12 }, (_, k) => linear(k)));
    expect(rates.slice(0, 5)).toEqual([0, 1e-3, 2e-3, 3e-3, lr * (6 / 7)]);
    expect(rates[10]).toBe(0);
    expect(after).toBe(0);
  });

  it('cosine with warmup and a floor (get_cosine_with_min_lr_schedule_with_warmup)', async () => {
    const lr = 2e-3, warmup = 2, total = 10, floor = 0.1;
    const cosine = (k: number) => {
      if (k < warmup) return lr * (k / Math.max(1, warmup));
      const progress = (k - warmup) / Math.max(1, total - warmup);
      const factor = 0.5 * (1 + Math.cos(Math.PI * progress));
      return lr * Math.max(0, factor * (1 - floor) + floor);
    };
    const { rates } = await collectRates({ learningRate: lr, warmupSteps: warmup, totalSteps: total, schedule: 'cosine', minLrRatio: floor }, 11);
    for (const [k, rate] of rates.entries()) expect(Math.abs(rate - cosine(k))).toBeLessThan(1e-18);
    expect(rates[0]).toBe(0);
    expect(rates[1]).toBe(1e-3);
    expect(rates[2]).toBe(lr);
    expect(rates[6]).toBeCloseTo(lr * (0.5 * 0.9 + 0.1), 17); // halfway: cos = 0
    expect(rates[10]).toBeCloseTo(lr * floor, 17);
  });

  it('constant with warmup', async () => {
    const { rates } = await collectRates({ learningRate: 1e-3, warmupSteps: 4, schedule: 'constant' }, 6);
    expect(rates).toEqual([0, 0.25e-3, 0.5e-3, 1e-3 * 0.75, 1e-3, 1e-3]);
  });
});

describe('gradient accumulation', () => {
  // Adam normalizes the gradient away (at step 1 the update is lr · g / (|g| + eps), about lr · sign(g)), so its
  // output says little about the accumulated gradient and is ill-conditioned where |g| is near eps: a last-bit
  // sign flip of a 1e-9 gradient, which another CPU kernel (AVX2 vs AVX-512) may well produce, moves the weight
  // by up to 2·lr. The accumulated gradient is therefore read back from a step that Adam makes linear in it: with
  // eps far above every |g| (and no decay or clipping) the step is -lr · g / (|g| + eps), inverted exactly below.
  // The ordinary step (eps 1e-8) is then checked against the float64 reference only where it is well-conditioned
  // (|g| far above eps and above the rounding noise of the accumulation).
  const READ_EPS = 1e3; // >> max |g| (~1 here): the step is lr/eps · g to within |g|/eps
  const READ_LR = 1e7; // lr/eps = 1e4: the gradient lands far above the fp32 spacing of the weights it moves

  /** Largest |x - ref| / tolerance (<= 1 passes). */
  function worstRatio(x: ArrayLike<number>, ref: ArrayLike<number>, tolerance: ArrayLike<number>): number {
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - ref[i]) / tolerance[i]);
    return worst;
  }

  const ulp32 = (x: number) => 2 ** (Math.floor(Math.log2(Math.max(Math.abs(x), 2 ** -126))) - 23);

  it('4 micro-batches: gradient = mean of the micro-batch gradients, loss = mean of their losses', async () => {
    const micro = [A, C, B, withFewerLabels(A, 3)];
    const tokens = micro.map(supervised);
    const original = fixtureWeights(UNTIED);
    const lr = BASE.learningRate!, decay = BASE.weightDecay!, eps = 1e-8;
    // Micro-batch gradients and losses, then the ordinary accumulated step (BASE: AdamW, eps 1e-8, decay 0.01).
    const { names, grads, losses, report, adam } = await withModel(UNTIED, async (model) => {
      const losses: number[] = [];
      for (const batch of micro) losses.push((await model.forward(batch, { outputs: ['loss'] })).loss.data[0] as number);
      const trainer = await model.createTrainer(BASE);
      const names = (await trainer.info()).parameters;
      const grads: NamedTensors[] = [];
      for (const batch of micro) grads.push(await trainer.gradients(batch, names));
      const report = await trainer.step(micro);
      const dir = scratch('accum');
      await trainer.save(dir);
      return { names, grads, losses, report, adam: savedWeights(dir) };
    });
    // The same step on a fresh copy with the linear readout.
    const { readReport, read } = await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ ...BASE, learningRate: READ_LR, epsilon: READ_EPS, weightDecay: 0, maxGradNorm: 0 });
      const readReport = await trainer.step(micro);
      const dir = scratch('accum-read');
      await trainer.save(dir);
      return { readReport, read: savedWeights(dir) };
    });

    expect(report.microBatches).toBe(4);
    expect(report.tokens).toBe(tokens.reduce((a, b) => a + b));
    const meanLoss = losses.reduce((a, b) => a + b) / 4;
    expect(Math.abs(report.loss - meanLoss)).toBeLessThan(1e-5 * meanLoss);

    let squares = 0, maxGrad = 0, checked = 0, moving = 0;
    let worstGrad = 0, worstSum = Infinity, worstFirst = Infinity, worstTokenMean = Infinity, worstAdam = 0, worstNoise = 0;
    const tokenTotal = tokens.reduce((a, b) => a + b);
    for (const name of names) {
      const parts = grads.map((g) => g[name].data as Float32Array);
      const n = parts[0].length;
      const w0 = toFloat64(original.get(name)!);
      const w1 = toFloat64(read.get(name)!);
      const wAdam = toFloat64(adam.get(name)!);
      const mean = new Float64Array(n), terms = new Float64Array(n), tokenMean = new Float64Array(n);
      const accumulated = new Float64Array(n), tolerance = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        for (const [k, part] of parts.entries()) {
          mean[i] += part[i] / 4;
          terms[i] += Math.abs(part[i]) / 4;
          tokenMean[i] += (part[i] * tokens[k]) / tokenTotal;
        }
        squares += mean[i] * mean[i];
        maxGrad = Math.max(maxGrad, Math.abs(mean[i]));
      }
      const scale = maxAbs(terms);
      for (let i = 0; i < n; i++) {
        // Invert Δ = -lr · g / (|g| + eps).
        const delta = w1[i] - w0[i];
        accumulated[i] = (-delta * READ_EPS) / (READ_LR - Math.abs(delta));
        // Rounding of the accumulation (1e-5 of the summed magnitudes, ~100 fp32 ulps; 1e-7 of the tensor's scale
        // for cancellations inside a kernel) plus the readout's own rounding (the weight's fp32 spacing, times
        // eps/lr, and fp32 rounding in the optimizer).
        tolerance[i] = 1e-5 * terms[i] + 1e-7 * scale + (2 * ulp32(Math.max(Math.abs(w0[i]), Math.abs(w1[i]))) * READ_EPS) / READ_LR + 1e-30;
      }
      worstGrad = Math.max(worstGrad, worstRatio(accumulated, mean, tolerance));
      // Sharp: the sum of the micro-batch gradients, the first one alone, or a token-weighted mean (transformers'
      // num_items_in_batch) would each miss by far.
      const scaled = (factor: number) => Float64Array.from(mean, (g) => g * factor);
      if (scale > 0) {
        worstSum = Math.min(worstSum, worstRatio(accumulated, scaled(4), tolerance));
        worstFirst = Math.min(worstFirst, worstRatio(accumulated, parts[0], tolerance));
        worstTokenMean = Math.min(worstTokenMean, worstRatio(accumulated, tokenMean, tolerance));
      }
      // The ordinary AdamW step against the float64 reference, where it is well-conditioned: |g| far enough above
      // eps and above the accumulation's tolerance that the update (lr · g / (|g| + eps)) cannot move by more than
      // one fp32 spacing whatever rounding the kernels do.
      const state = newAdamState(original.get(name)!);
      adamwStep(state, mean, 1, lr, decays(name) ? decay : 0, 1, eps);
      for (let i = 0; i < n; i++) {
        // The update's change if the gradient moved by its whole tolerance (lr · eps · δg / g²): at most one fp32
        // spacing of the weight, and the sign of g certain.
        const margin = Math.abs(mean[i]) - tolerance[i];
        const sensitivity = margin > 0 ? (lr * eps * tolerance[i]) / (margin + eps) ** 2 : Infinity;
        const spacing = ulp32(Math.max(Math.abs(w0[i]), lr));
        // Where every micro-batch gradient is exactly 0 (embedding rows of absent tokens) the step is the decay alone.
        if (terms[i] > 0) moving++;
        if (terms[i] === 0 || sensitivity <= spacing) {
          if (terms[i] > 0) checked++;
          // fp32 roundings: the decayed weight, the sum and the gradient-noise budget above (an fp32 spacing each,
          // at the largest of the weights and lr), and the update's ~7 operations (8 spacings of lr: twice their worst).
          const bound = 3 * ulp32(Math.max(Math.abs(w0[i]), Math.abs(state.w[i]), lr)) + 8 * ulp32(lr);
          worstAdam = Math.max(worstAdam, Math.abs(wAdam[i] - state.w[i]) / bound);
        } else {
          // Elsewhere only what holds for any gradient: the decay, then a step of at most lr.
          const decayed = w0[i] * (1 - lr * (decays(name) ? decay : 0));
          worstNoise = Math.max(worstNoise, Math.abs(wAdam[i] - decayed) / (lr * (1 + 1e-6) + 4 * ulp32(Math.max(Math.abs(w0[i]), lr))));
        }
      }
    }
    console.log(
      `gradient accumulation: accumulated vs mean ${worstGrad.toPrecision(3)} of the tolerance (sum ${worstSum.toPrecision(3)}, first ` +
        `${worstFirst.toPrecision(3)}, token-weighted ${worstTokenMean.toPrecision(3)}); AdamW on ${checked} of the ${moving} elements with a gradient ` +
        `${worstAdam.toPrecision(3)} of the bound, elsewhere |step| <= ${worstNoise.toPrecision(3)} lr; max |g| ${maxGrad.toPrecision(3)}`,
    );
    expect(maxGrad).toBeLessThan(READ_EPS / 100); // the readout is linear
    expect(worstGrad).toBeLessThanOrEqual(1);
    expect(worstSum).toBeGreaterThan(100);
    expect(worstFirst).toBeGreaterThan(100);
    expect(worstTokenMean).toBeGreaterThan(100);

    const norm = Math.sqrt(squares);
    for (const r of [report, readReport]) expect(Math.abs(r.gradNorm - norm) / norm).toBeLessThan(1e-5);
    // Not the norm of any single micro-batch, nor of their sum.
    expect(Math.abs(report.gradNorm - globalNorm(grads[0])) / norm).toBeGreaterThan(1e-2);
    expect(Math.abs(report.gradNorm - 4 * norm) / norm).toBeGreaterThan(1);

    expect(checked).toBeGreaterThan(0.75 * moving); // most of the update is checked to a few ulps
    expect(worstAdam).toBeLessThanOrEqual(1);
    expect(worstNoise).toBeLessThanOrEqual(1);
  });
});

describe('bf16 weights at lr 1e-6 (updates far below half a bf16 ulp)', () => {
  const STEPS = 10;
  // Trains STEPS steps and returns the saved state (bf16 weights + optimizer tensors) and the trainable names.
  async function run(updateMode: 'master' | 'kahan' | 'stochastic' | 'pure') {
    return withModel(
      UNTIED_BF16,
      async (model) => {
        const trainer = await model.createTrainer({ learningRate: 1e-6, schedule: 'constant', updateMode, seed: 7 });
        const names = (await trainer.info()).parameters;
        for (let k = 0; k < STEPS; k++) await trainer.step(A);
        const dir = scratch(`bf16-${updateMode}`);
        await trainer.saveState(dir);
        return { names, weights: savedWeights(join(dir, 'model')), optimizer: readSafetensors(join(dir, 'optimizer.safetensors')) };
      },
      'bf16',
    );
  }
  const changedElements = (names: string[], weights: Map<string, HostTensor>) => {
    const original = fixtureWeights(UNTIED_BF16);
    let changed = 0, total = 0;
    for (const name of names) {
      const before = original.get(name)!.data as Uint16Array, after = weights.get(name)!.data as Uint16Array;
      expect(weights.get(name)!.dtype).toBe('BF16');
      total += before.length;
      for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) changed++;
    }
    return { changed, total };
  };

  it('master and kahan accumulate the updates that pure bf16 rounds away; stochastic rounding is unbiased', async () => {
    const pure = await run('pure');
    const master = await run('master');
    const kahan = await run('kahan');
    const stochastic = await run('stochastic');
    const counts = {
      pure: changedElements(pure.names, pure.weights),
      master: changedElements(master.names, master.weights),
      kahan: changedElements(kahan.names, kahan.weights),
      stochastic: changedElements(stochastic.names, stochastic.weights),
    };
    console.log(`bf16 lr 1e-6, ${STEPS} steps, changed elements of ${counts.pure.total}:`,
      Object.fromEntries(Object.entries(counts).map(([mode, c]) => [mode, c.changed])));
    // pure: only weights below ~2.5e-4 in magnitude (where 1e-6 exceeds half an ulp) can move.
    expect(counts.pure.changed / counts.pure.total).toBeLessThan(0.005);
    expect(counts.master.changed).toBeGreaterThan(5 * counts.pure.changed);
    // pure keeps bf16 moments, the others fp32 moments (and master an fp32 copy, kahan a bf16 residual).
    const q = 'model.language_model.layers.0.self_attn.q_proj.weight';
    expect(pure.optimizer.get(`exp_avg.${q}`)!.dtype).toBe('BF16');
    expect(master.optimizer.get(`exp_avg.${q}`)!.dtype).toBe('F32');
    expect(master.optimizer.get(`master.${q}`)!.dtype).toBe('F32');
    expect(kahan.optimizer.get(`compensation.${q}`)!.dtype).toBe('BF16');
    expect(stochastic.optimizer.has(`master.${q}`) || stochastic.optimizer.has(`compensation.${q}`)).toBe(false);
    // master: the bf16 weight is the fp32 master rounded to nearest.
    for (const name of master.names) {
      const m32 = master.optimizer.get(`master.${name}`)!.data as Float32Array;
      const words = master.weights.get(name)!.data as Uint16Array;
      const rounded = new Uint16Array(m32.length);
      const bits = new Uint32Array(m32.buffer, m32.byteOffset, m32.length);
      for (let i = 0; i < m32.length; i++) rounded[i] = (bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16;
      expect(Buffer.compare(Buffer.from(rounded.buffer), Buffer.from(words.buffer, words.byteOffset, words.byteLength)), name).toBe(0);
    }
    // kahan tracks master almost element for element.
    let agree = 0, total = 0;
    for (const name of master.names) {
      const a = master.weights.get(name)!.data as Uint16Array, b = kahan.weights.get(name)!.data as Uint16Array;
      for (let i = 0; i < a.length; i++, total++) if (a[i] === b[i]) agree++;
    }
    expect(agree / total).toBeGreaterThan(0.999);
    expect(Math.abs(counts.kahan.changed - counts.master.changed)).toBeLessThan(0.05 * counts.master.changed);
    // stochastic: E[rounded] = exact, so the bf16 moves regress onto the fp32 master's drift with slope ~1 and
    // point the same way.
    const original = fixtureWeights(UNTIED_BF16);
    let sxy = 0, sxx = 0, moved = 0, sameWay = 0;
    for (const name of stochastic.names) {
      const w0 = toFloat64(original.get(name)!), exact = toFloat64(master.optimizer.get(`master.${name}`)!);
      const s = toFloat64(stochastic.weights.get(name)!);
      for (let i = 0; i < w0.length; i++) {
        const dm = exact[i] - w0[i], ds = s[i] - w0[i];
        sxy += dm * ds;
        sxx += dm * dm;
        if (ds !== 0) {
          moved++;
          if (Math.sign(ds) === Math.sign(dm)) sameWay++;
        }
      }
    }
    console.log(`stochastic: slope ${(sxy / sxx).toFixed(3)}, ${moved} moved, ${((100 * sameWay) / moved).toFixed(2)}% in the master's direction`);
    expect(sxy / sxx).toBeGreaterThan(0.8);
    expect(sxy / sxx).toBeLessThan(1.2);
    expect(moved).toBeGreaterThan(counts.master.changed);
    expect(sameWay / moved).toBeGreaterThan(0.97);
  });
});

describe('LoRA', () => {
  const LORA = { rank: 4, alpha: 8, dropout: 0.1 };

  it('the adapter forward equals the merged checkpoint; the adapter folder is in peft layout', async () => {
    const adapterDir = scratch('lora-adapter');
    const mergedDir = scratch('lora-merged');
    const original = fixtureWeights(UNTIED);
    const { withAdapter, names } = await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ ...BASE, learningRate: 1e-2, lora: LORA });
      const names = (await trainer.info()).parameters;
      for (const batch of [A, B, C, A]) await trainer.step(batch);
      await trainer.save(adapterDir);
      await trainer.save(mergedDir, { mergeAdapter: true });
      return { withAdapter: [await logitsOf(model, A), await logitsOf(model, B)], names };
    });
    expect(names.every((n) => /\.lora_[AB]\.weight$/.test(n))).toBe(true);
    expect(names.length).toBe(4 * 7 * 2);
    // peft layout.
    expect(readdirSync(adapterDir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, lora_dropout: 0.1, bias: 'none' });
    expect([...config.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    const adapter = readSafetensors(join(adapterDir, 'adapter_model.safetensors'));
    expect(adapter.size).toBe(56);
    const a = adapter.get('base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight')!;
    const b = adapter.get('base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight')!;
    expect(a.shape).toEqual([4, 64]);
    expect(b.shape).toEqual([64, 4]);
    expect(adapter.get('base_model.model.model.language_model.layers.3.mlp.down_proj.lora_A.weight')!.shape).toEqual([4, 128]);
    expect(adapter.get('base_model.model.model.language_model.layers.3.self_attn.k_proj.lora_B.weight')!.shape).toEqual([32, 4]);
    expect((b.data as Float32Array).some((x) => x !== 0)).toBe(true); // B starts at zero and has trained
    // Merged: only the adapted linears changed (the base was frozen); its forward equals the adapter forward.
    const merged = savedWeights(mergedDir);
    for (const [name, tensor] of original) {
      const adapted = /language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(name);
      expect(sameBits(merged.get(name)!, tensor), name).toBe(!adapted);
    }
    const reloaded = await withModel(mergedDir, async (model) => [await logitsOf(model, A), await logitsOf(model, B)]);
    const baseLogits = await withModel(UNTIED, async (model) => logitsOf(model, A));
    // W + s·BA rounded to fp32 vs x·Wᵀ + s·(x·Aᵀ)·Bᵀ: equal up to fp32 rounding, relative to the logit scale.
    const diffs = reloaded.map((logits, k) => maxAbsDiff(logits, withAdapter[k]) / Math.max(1, maxAbs(withAdapter[k])));
    console.log(`LoRA adapter vs merged logits: max |diff| / max |logit| ${diffs.map((d) => d.toExponential(2)).join(', ')}`);
    for (const d of diffs) expect(d).toBeLessThan(1e-5);
    expect(maxAbsDiff(baseLogits, withAdapter[0])).toBeGreaterThan(1e-2); // the adapter matters
  });

  it('the same seed gives the same run, dropout included', async () => {
    const run = () =>
      withModel(UNTIED, async (model) => {
        const trainer = await model.createTrainer({ ...BASE, learningRate: 1e-2, lora: { ...LORA, dropout: 0.3 }, seed: 11 });
        const losses: number[] = [];
        for (const batch of [A, B, C]) losses.push((await trainer.step(batch)).loss);
        return { losses, logits: await logitsOf(model, A) };
      });
    const first = await run();
    const second = await run();
    expect(second.losses).toEqual(first.losses);
    expect(maxAbsDiff(second.logits, first.logits)).toBe(0);
  });

  it('loraOnly false: trained base weights survive save and saveState/loadState', async () => {
    const options: TrainerOptions = { ...BASE, learningRate: 1e-2, lora: { ...LORA, dropout: 0, loraOnly: false } };
    const stateDir = scratch('lora-full-state');
    const adapterDir = scratch('lora-full-adapter');
    const { uninterrupted, names } = await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer(options);
      const names = (await trainer.info()).parameters;
      await trainer.step(A);
      await trainer.saveState(stateDir);
      await trainer.save(adapterDir);
      await trainer.step(C);
      return { uninterrupted: await logitsOf(model, A), names };
    });
    expect(names).toContain('lm_head.weight');
    expect(names).toContain('model.language_model.layers.0.self_attn.q_proj.lora_A.weight');
    // save(): the adapter at the top (peft), the trained base beside it (transformers), named as the base.
    expect(readdirSync(adapterDir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'base']);
    expect(JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(join(adapterDir, 'base'));
    const base = savedWeights(join(adapterDir, 'base'));
    expect(sameBits(base.get('lm_head.weight')!, fixtureWeights(UNTIED).get('lm_head.weight')!)).toBe(false);
    expect(sameBits(base.get('model.visual.merger.linear_fc1.weight')!, fixtureWeights(UNTIED).get('model.visual.merger.linear_fc1.weight')!)).toBe(true);
    const resumed = await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer(options);
      await trainer.loadState(stateDir);
      await trainer.step(C);
      return logitsOf(model, A);
    });
    expect(maxAbsDiff(resumed, uninterrupted)).toBe(0);
  });
});

describe('save and load', () => {
  for (const [label, dir] of [['untied', UNTIED], ['tied', TIED]] as const) {
    it(`a saved ${label} checkpoint reloads to bit-identical logits`, async () => {
      const out = scratch(`save-${label}`);
      const trained = await withModel(dir, async (model) => {
        const trainer = await model.createTrainer({ ...BASE, learningRate: 1e-2 });
        for (const batch of [A, C]) await trainer.step(batch);
        await trainer.save(out);
        return [await logitsOf(model, A), await logitsOf(model, B)];
      });
      const weights = savedWeights(out);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      expect(readdirSync(out).filter((f) => f.endsWith('.safetensors'))).toEqual(['model.safetensors']);
      expect(weights.has('lm_head.weight')).toBe(label === 'untied');
      expect(config.tie_word_embeddings).toBe(label === 'tied');
      expect(config.text_config.tie_word_embeddings).toBe(label === 'tied');
      expect(new Set(weights.keys())).toEqual(new Set(fixtureWeights(dir).keys()));
      for (const tensor of weights.values()) expect(tensor.dtype).toBe('F32');
      const reloaded = await withModel(out, async (model) => [await logitsOf(model, A), await logitsOf(model, B)]);
      expect(maxAbsDiff(reloaded[0], trained[0])).toBe(0);
      expect(maxAbsDiff(reloaded[1], trained[1])).toBe(0);
    });
  }

  it('bf16 weights save as bf16', async () => {
    const out = scratch('save-bf16');
    await withModel(UNTIED_BF16, async (model) => {
      const trainer = await model.createTrainer({ ...BASE, learningRate: 1e-2 });
      await trainer.step(A);
      await trainer.save(out);
    }, 'bf16');
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config.dtype).toBe('bfloat16');
    for (const tensor of savedWeights(out).values()) expect(tensor.dtype).toBe('BF16');
  });

  // saveCheckpoint's maxShardBytes is a C++ default argument the JS API does not expose.
  it.todo('sharded save (model-0000k-of-0000n.safetensors + index), once the shard size reaches the JS API');
});

describe('resume', () => {
  // Steps 1-2, saveState, step 3 in one trainer; a fresh model + trainer loads the state and takes step 3: the
  // weights must be bit-identical (moments, master weights, step counter for the schedule, RNG state).
  const cases: { label: string; dir: string; dtype: 'fp32' | 'bf16'; options: TrainerOptions }[] = [
    { label: 'fp32, linear warmup/decay', dir: UNTIED, dtype: 'fp32', options: { learningRate: 1e-2, warmupSteps: 1, totalSteps: 5, weightDecay: 0.01, maxGradNorm: 1 } },
    { label: 'bf16 master', dir: UNTIED_BF16, dtype: 'bf16', options: { learningRate: 1e-3, schedule: 'cosine', totalSteps: 5, updateMode: 'master' } },
    { label: 'bf16 kahan', dir: UNTIED_BF16, dtype: 'bf16', options: { learningRate: 1e-5, updateMode: 'kahan', totalSteps: 5 } },
    { label: 'bf16 stochastic rounding (trainer RNG)', dir: UNTIED_BF16, dtype: 'bf16', options: { learningRate: 1e-5, updateMode: 'stochastic', totalSteps: 5 } },
    { label: 'LoRA with dropout (device RNG)', dir: UNTIED, dtype: 'fp32', options: { learningRate: 1e-2, totalSteps: 5, lora: { rank: 4, alpha: 8, dropout: 0.2 } } },
  ];
  for (const { label, dir, dtype, options } of cases) {
    it(`saveState → new trainer → loadState continues bit-exactly (${label})`, async () => {
      const state = scratch('state');
      const straight = await withModel(dir, async (model) => {
        const trainer = await model.createTrainer(options);
        await trainer.step(A);
        await trainer.step(B);
        await trainer.saveState(state);
        const report = await trainer.step(C);
        const out = scratch('straight');
        await trainer.save(out, { mergeAdapter: true });
        return { report, weights: savedWeights(out), logits: await logitsOf(model, A) };
      }, dtype);
      const resumed = await withModel(dir, async (model) => {
        const trainer = await model.createTrainer(options);
        await trainer.step(C); // a throwaway step: loadState must overwrite everything it touched
        await trainer.loadState(state);
        expect((await trainer.info()).step).toBe(2);
        const report = await trainer.step(C);
        const out = scratch('resumed');
        await trainer.save(out, { mergeAdapter: true });
        return { report, weights: savedWeights(out), logits: await logitsOf(model, A) };
      }, dtype);
      expect(resumed.report.step).toBe(3);
      expect(resumed.report.learningRate).toBe(straight.report.learningRate);
      expect(resumed.report.loss).toBe(straight.report.loss);
      expect(resumed.report.gradNorm).toBe(straight.report.gradNorm);
      for (const [name, tensor] of straight.weights) expect(sameBits(resumed.weights.get(name)!, tensor), name).toBe(true);
      expect(maxAbsDiff(resumed.logits, straight.logits)).toBe(0);
      const meta = JSON.parse(readFileSync(join(state, 'trainer_state.json'), 'utf8'));
      expect(meta).toMatchObject({ format: 'pigg-trainer-state/1', step: 2 });
      expect(existsSync(join(state, 'optimizer.safetensors'))).toBe(true);
    });
  }

  it('loadState refuses a state saved with another trainable setup', async () => {
    const state = scratch('state-mismatch');
    await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer(BASE);
      await trainer.step(A);
      await trainer.saveState(state);
    });
    await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ ...BASE, trainable: { lastLayers: 2 } });
      await expect(trainer.loadState(state)).rejects.toThrow(/trainable parameters differ/);
    });
  });
});

describe('learning', () => {
  it('overfits one batch: the loss falls by >= 90% within 5 steps and by >= 99.9% within 60 (lr 1e-2)', async () => {
    const losses = await withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ learningRate: 1e-2, schedule: 'constant', maxGradNorm: 1 });
      const losses: number[] = [];
      for (let k = 0; k < 60; k++) losses.push((await trainer.step(A)).loss);
      const after = (await model.forward(A, { outputs: ['loss'] })).loss.data[0] as number;
      losses.push(after);
      return losses;
    });
    const first = losses[0];
    const stepsTo90 = losses.findIndex((l) => l <= 0.1 * first);
    console.log(`overfit case a: loss ${first.toFixed(3)} → ${losses[10].toExponential(2)} after 10 steps → ${losses[60].toExponential(2)} after 60; ≤10% at step ${stepsTo90}`);
    expect(first).toBeGreaterThan(5);
    expect(stepsTo90).toBeGreaterThan(0);
    expect(stepsTo90).toBeLessThanOrEqual(5);
    expect(losses[60]).toBeLessThan(1e-3 * first);
  });
});

describe('gradient checkpointing', () => {
  async function gradientsWith(gradientCheckpointing: boolean, options: TrainerOptions, batch: NamedTensors) {
    return withModel(UNTIED, async (model) => {
      const trainer = await model.createTrainer({ ...options, gradientCheckpointing });
      return trainer.gradients(batch, (await trainer.info()).parameters);
    });
  }
  const setups: [string, TrainerOptions, NamedTensors][] = [
    ['full text side, one image', {}, A],
    ['full text side, batch 2 with padding', {}, B],
    ['lastLayers 2, embeddings off', { trainable: { lastLayers: 2, embeddings: false } }, B],
    ['vision tower and aligner too', { trainable: { vision: true, aligner: true } }, A],
    ['LoRA with dropout (replayed RNG)', { lora: { rank: 4, alpha: 8, dropout: 0.2 }, seed: 5 }, B],
  ];
  for (const [label, options, batch] of setups) {
    it(`same gradients on and off (${label})`, async () => {
      const on = await gradientsWith(true, options, batch);
      const off = await gradientsWith(false, options, batch);
      expect(Object.keys(on).sort()).toEqual(Object.keys(off).sort());
      let worst = 0, scale = 0;
      for (const name of Object.keys(on)) {
        worst = Math.max(worst, maxAbsDiff(on[name].data as Float32Array, off[name].data as Float32Array));
        scale = Math.max(scale, maxAbs(off[name].data as Float32Array));
      }
      expect(scale).toBeGreaterThan(0);
      expect(worst).toBeLessThan(1e-6 * Math.max(1, scale));
    });
  }

  it('lowers the peak memory of a training step (child processes, peak RSS)', async () => {
    // A random 8-layer model (hidden 256, intermediate 1024) and 4 × 1024 synthetic tokens; each variant runs one
    // step in its own process and reports getrusage's maxRSS before and after the step. The engine's host tensor
    // cache is off and glibc's mmap threshold pinned, so freed activation buffers go back to the OS and RSS
    // follows live memory (kept blocks would otherwise inflate both peaks).
    const config = JSON.parse(readFileSync(join(UNTIED, 'config.json'), 'utf8'));
    Object.assign(config.text_config, { hidden_size: 256, intermediate_size: 1024, num_hidden_layers: 8, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 64 });
    config.text_config.rope_scaling.mrope_section = [16, 8, 8];
    Object.assign(config.vision_config, { depth: 1, deepstack_visual_indexes: [0], out_hidden_size: 256 });
    const modelDir = scratch('memory-model');
    await native().initRandom(JSON.stringify(config), modelDir, { dtype: 'fp32', seed: 1 });
    const measure = (checkpointing: boolean) => {
      const child = spawnSync(process.execPath, [HELPER, modelDir, checkpointing ? '1' : '0', '4', '1024'], {
        encoding: 'utf8',
        env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072', PIGG_CPU_CACHE_MB: '0' },
        timeout: 120_000,
      });
      expect(child.status, child.stderr).toBe(0);
      return JSON.parse(child.stdout.trim().split('\n').pop()!) as { baselineKiB: number; peakKiB: number; stepKiB: number; loss: number; seconds: number };
    };
    const off = measure(false);
    const on = measure(true);
    const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    console.log(
      `peak RSS, one step of 4×1024 tokens, 8 layers × 256 hidden: checkpointing off ${mib(off.peakKiB)} (step +${mib(off.stepKiB)}, ${off.seconds.toFixed(2)} s), ` +
        `on ${mib(on.peakKiB)} (step +${mib(on.stepKiB)}, ${on.seconds.toFixed(2)} s); step memory ratio ${(on.stepKiB / off.stepKiB).toFixed(2)}`,
    );
    expect(on.loss).toBe(off.loss);
    expect(on.peakKiB).toBeLessThan(off.peakKiB);
    expect(on.stepKiB).toBeLessThan(0.5 * off.stepKiB);
  });
});
