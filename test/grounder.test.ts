// The Grounder on a tiny random model (CPU, fp32, greedy): one call equals the hand-built path (prompt, host
// tensors, generate, special-token decoding) and predict()'s record; concurrent calls batch into one generate call
// and answer as one-at-a-time calls do; grid -> pixel mapping against the image's size; aborts, unknown users and
// dispose.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDataset } from '../lib/data/manifest.js';
import { writeSynthDataset } from '../lib/data/synth/index.js';
import type { Sample } from '../lib/data/types.js';
import { initRandomModel } from '../lib/engine/configs.js';
import { Qwen3VL, type GenerateResult } from '../lib/engine/model.js';
import { modelBatch, type PromptSettings } from '../lib/processor/inputs.js';
import { predict } from '../lib/experiments/predict.js';
import { runTrainGlobal } from '../lib/experiments/runs.js';
import { Grounder, longestAnswerBytes, type BatchStats, type GroundResult } from '../lib/grounding/grounder.js';
import { QwenTokenizer } from '../lib/processor/tokenizer.js';

const cli = join(resolve(import.meta.dirname, '..'), 'dist', 'cli', 'index.js');
const work = mkdtempSync(join(tmpdir(), 'pigg-grounder-'));
const data = join(work, 'data');
const base = join(work, 'base');
const trained = join(work, 'trained');
const IMAGE = { minPixels: 65536, maxPixels: 100352 };
const settings: PromptSettings = { style: 'pigg', image: IMAGE };
const MAX_NEW = 24;
const options = { device: 'cpu', dtype: 'fp32' as const, image: IMAGE, maxNewTokens: MAX_NEW, imageWorkers: 0, constrain: 'none' as const };

let samples: Sample[];
let model: Qwen3VL;
let tokenizer: QwenTokenizer;
const imageOf = (sample: Sample) => join(data, sample.image);

beforeAll(async () => {
  await writeSynthDataset(data, { users: 2, personal: 1, samplesPerUser: 10, seed: 5, small: true });
  await initRandomModel('tiny', base, { seed: 3 });
  // An untrained tiny model answers "\n" to everything; ~120 steps make its answers depend on the screen and the
  // instruction (and mostly parse), so equal answers below mean something.
  await runTrainGlobal({
    data, settings, load: { device: 'cpu', dtype: 'fp32' }, model: base, users: '1-2', output: trained, imageWorkers: 0,
    overrides: { learningRate: 3e-3, epochs: 6, gradientAccumulation: 1, warmupSteps: 1, gradientCheckpointing: false },
  });
  samples = (await readDataset(data)).samples;
  tokenizer = QwenTokenizer.fromDir(trained);
  model = await Qwen3VL.load(trained, { device: 'cpu', dtype: 'fp32' });
});

afterAll(() => {
  model?.dispose();
  rmSync(work, { recursive: true, force: true });
});

/** The 12 statements a caller needed before the Grounder: prompt, host tensors, generate, decoding. */
async function byHand(batch: Sample[]): Promise<{ tokens: number[][]; texts: string[] }> {
  const inputs = await modelBatch(tokenizer, batch, data, settings, 'generate');
  const { tokens } = await model.generate(inputs, { maxNewTokens: MAX_NEW });
  return { tokens, texts: tokens.map((row) => tokenizer.decode(row, { skipSpecialTokens: true })) };
}

/** Generated tokens up to and including the first end token. */
function generatedCount(row: number[]): number {
  const end = row.findIndex((t) => t === 151645 || t === 151643);
  return end < 0 ? row.length : end + 1;
}

/** A LoRA adapter trained a few steps on one user's samples from the trained model. */
async function trainAdapter(dir: string, user: string, rank: number): Promise<void> {
  const own = await Qwen3VL.load(trained, { device: 'cpu', dtype: 'fp32' });
  try {
    const trainer = await own.createTrainer({ learningRate: 1e-2, warmupSteps: 0, totalSteps: 12, weightDecay: 0, seed: 1, lora: { rank, alpha: 2 * rank, dropout: 0 } });
    const mine = samples.filter((s) => s.user === user).slice(0, 6);
    for (let step = 0; step < 12; step++) await trainer.step(await modelBatch(tokenizer, [mine[step % mine.length]!], data, settings, 'pigg'));
    await trainer.save(dir);
    trainer.dispose();
  } finally {
    own.dispose();
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('Grounder', () => {
  it('one ground() call equals the hand-built path and predict()\'s record; grid maps to the image\'s pixels', async () => {
    const sample = samples[0]!;
    const ref = await byHand([sample]);
    const reference = ref.texts[0];
    await using grounder = await Grounder.load(trained, options);
    expect(grounder.modelName).toBe('trained');
    const tap = await grounder.ground(imageOf(sample), sample.instruction);
    expect(tap.text).toBe(reference);
    expect(tap.tokens).toBe(generatedCount(ref.tokens[0]!));
    expect(tap.finishReason).toBe(tap.tokens === MAX_NEW && ![151645, 151643].includes(ref.tokens[0]![MAX_NEW - 1]!) ? 'length' : 'stop');
    expect(tap.promptTokens).toBe((await modelBatch(tokenizer, [sample], data, settings, 'generate')).input_ids!.shape[1]);
    expect(tap.adapter).toBeNull();
    expect(tap.seconds).toBeGreaterThanOrEqual(0);
    expect(tap.x).toBe((tap.grid.x / 1000) * sample.width);
    expect(tap.y).toBe((tap.grid.y / 1000) * sample.height);

    // Bytes instead of a path give the same answer.
    const bytes = await grounder.ground(readFileSync(imageOf(sample)), sample.instruction);
    expect(bytes.text).toBe(tap.text);

    const [record] = await predict(model, tokenizer, [sample], data, { settings, maxNewTokens: MAX_NEW });
    expect(record!.output).toBe(tap.text);
    expect(record!.pred).toEqual(tap.parsed ? [tap.grid.x, tap.grid.y] : null);
    expect(record!.referring).toBe(tap.referring);
    expect(grounder.pending).toBe(0);
  });

  it('predict() in batches of 3 gives the records of the hand-built batches', async () => {
    const some = samples.slice(0, 7);
    const records = await predict(model, tokenizer, some, data, { settings, batchSize: 3, maxNewTokens: MAX_NEW });
    const texts: string[] = [];
    for (let i = 0; i < some.length; i += 3) texts.push(...(await byHand(some.slice(i, i + 3))).texts);
    expect(records.map((r) => r.id)).toEqual(some.map((s) => s.id));
    expect(records.map((r) => r.output)).toEqual(texts);
  });

  it('concurrent calls join generate calls of up to maxBatch rows and answer as one-at-a-time calls', async () => {
    const batches: BatchStats[] = [];
    await using grounder = await Grounder.load(trained, { ...options, maxBatch: 4, onBatch: (stats) => batches.push(stats) });
    const some = [...samples.slice(0, 3), ...samples.slice(10, 13)]; // both users
    const alone: GroundResult[] = [];
    for (const sample of some) alone.push(await grounder.ground(imageOf(sample), sample.instruction));
    expect(batches.map((b) => b.size)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(new Set(alone.map((r) => r.text)).size).toBeGreaterThan(1); // answers depend on the sample
    batches.length = 0;

    const pieces: string[][] = some.map(() => []);
    const calls = some.map((sample, i) => grounder.ground(imageOf(sample), sample.instruction, { onText: (delta) => pieces[i]!.push(delta) }));
    expect(grounder.pending).toBe(6);
    const together = await Promise.all(calls);
    expect(grounder.pending).toBe(0);
    // Streamed pieces join to the answer exactly.
    expect(pieces.map((p) => p.join(''))).toEqual(together.map((r) => r.text));
    console.log(`streamed pieces per answer: ${pieces.map((p) => p.length).join(', ')}`);
    expect(batches.map((b) => b.size)).toEqual([4, 2]);
    expect(together.map((r) => r.text)).toEqual(alone.map((r) => r.text));
    expect(together.map((r) => r.tokens)).toEqual(alone.map((r) => r.tokens));
    expect(batches.map((b) => b.tokens)).toEqual([
      alone.slice(0, 4).reduce((n, r) => n + r.tokens, 0), alone.slice(4).reduce((n, r) => n + r.tokens, 0)]);
    for (const b of batches) {
      expect(b.adapters).toBe(0);
      expect(b.queueSeconds).toHaveLength(b.size);
      for (const s of b.queueSeconds) expect(Number.isFinite(s)).toBe(true);
    }
  });

  it('maps the grid to the pixels of the image given, whatever its size', async () => {
    await using grounder = await Grounder.load(trained, options);
    let checked = 0;
    for (const sample of samples.slice(0, 6)) {
      const resized = await sharp(imageOf(sample)).resize(300, 700, { fit: 'fill' }).png().toBuffer();
      const tap = await grounder.ground(resized, sample.instruction);
      if (!tap.parsed) continue;
      checked++;
      expect(tap.x).toBe((tap.grid.x / 1000) * 300);
      expect(tap.y).toBe((tap.grid.y / 1000) * 700);
      expect(tap.grid.x + tap.grid.y).toBeGreaterThan(0);
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('an abort before the batch starts drops that request only; an abort while running rejects that row only', async () => {
    const batches: BatchStats[] = [];
    await using grounder = await Grounder.load(trained, { ...options, maxBatch: 4, onBatch: (stats) => batches.push(stats) });
    const [a, b, c] = samples;
    const alone = [];
    for (const s of [a!, c!]) alone.push((await grounder.ground(imageOf(s), s.instruction)).text);
    batches.length = 0;

    const controller = new AbortController();
    const first = grounder.ground(imageOf(a!), a!.instruction);
    const dropped = grounder.ground(imageOf(b!), b!.instruction, { signal: controller.signal });
    const third = grounder.ground(imageOf(c!), c!.instruction);
    controller.abort();
    const error = await rejection(dropped);
    expect(error.name).toBe('AbortError');
    expect((await first).text).toBe(alone[0]);
    expect((await third).text).toBe(alone[1]);
    expect(batches.map((s) => s.size)).toEqual([2]);

    // An already-aborted signal never queues.
    expect((await rejection(grounder.ground(imageOf(a!), a!.instruction, { signal: AbortSignal.abort() }))).name).toBe('AbortError');

    // Aborted once its batch is running (right after generate was called): that row rejects, its neighbour answers.
    const running = new AbortController();
    const generate = grounder.model.generate.bind(grounder.model);
    let engineResult: Promise<GenerateResult> | undefined;
    grounder.model.generate = (inputs, opts) => {
      engineResult = generate(inputs, opts);
      running.abort();
      return engineResult;
    };
    try {
      const stopped = grounder.ground(imageOf(a!), a!.instruction, { signal: running.signal });
      const neighbour = grounder.ground(imageOf(c!), c!.instruction);
      expect((await rejection(stopped)).name).toBe('AbortError');
      expect((await neighbour).text).toBe(alone[1]);
      // The engine stopped that row itself (rowSignals), not only the Grounder's bookkeeping.
      expect((await engineResult!).aborted).toEqual([true, false]);
    } finally {
      grounder.model.generate = generate;
    }
    // The model stays usable.
    expect((await grounder.ground(imageOf(a!), a!.instruction)).text).toBe(alone[0]);
    expect(grounder.pending).toBe(0);
  });

  it('rejects an unknown user, a bad image and bad arguments with a code and one clear message', async () => {
    await using grounder = await Grounder.load(trained, options);
    const sample = samples[0]!;
    const unknown = await rejection(grounder.ground(imageOf(sample), sample.instruction, { user: 'u7' }));
    expect(unknown.code).toBe('UNKNOWN_ADAPTER');
    expect(unknown.message).toMatch(/no adapter named 'u7'/);
    const missing = await rejection(grounder.ground(join(work, 'nope.png'), sample.instruction));
    expect(missing.code).toBe('INVALID_IMAGE');
    expect(missing.message).toMatch(/image not found/);
    const garbage = await rejection(grounder.ground(Buffer.from('not an image'), sample.instruction));
    expect(garbage.code).toBe('INVALID_IMAGE');
    expect(garbage.message).toMatch(/cannot decode image/);
    expect((await rejection(grounder.ground(imageOf(sample), '  '))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(grounder.ground(imageOf(sample), sample.instruction, { maxNewTokens: 0 }))).code).toBe('INVALID_ARGUMENT');
    // A bad request in a batch does not disturb the others.
    const [good, bad] = await Promise.allSettled([
      grounder.ground(imageOf(sample), sample.instruction), grounder.ground(Buffer.from('x'), sample.instruction)]);
    expect(good.status).toBe('fulfilled');
    expect(bad.status).toBe('rejected');
  });

  it('load reports progress up to 1 and an aborted load rejects with an AbortError', async () => {
    const fractions: number[] = [];
    const grounder = await Grounder.load(trained, { ...options, onProgress: (f) => fractions.push(f) });
    await grounder[Symbol.asyncDispose]();
    expect(fractions.at(-1)).toBe(1);
    for (let i = 1; i < fractions.length; i++) expect(fractions[i]).toBeGreaterThanOrEqual(fractions[i - 1]!);
    expect((await rejection(Grounder.load(trained, { ...options, signal: AbortSignal.abort() }))).name).toBe('AbortError');
    expect((await rejection(Grounder.load(trained, { ...options, maxBatch: 0 }))).code).toBe('INVALID_ARGUMENT');
  });

  it('dispose rejects queued requests and every later call with a clear error; fromModel leaves the model loaded', async () => {
    const grounder = await Grounder.load(trained, options);
    const sample = samples[0]!;
    const queued = grounder.ground(imageOf(sample), sample.instruction);
    grounder.dispose();
    expect((await rejection(queued)).code).toBe('GROUNDER_DISPOSED');
    const after = await rejection(grounder.ground(imageOf(sample), sample.instruction));
    expect(after.code).toBe('GROUNDER_DISPOSED');
    expect(after.message).toBe('the grounder was disposed');
    await grounder[Symbol.asyncDispose]();

    const borrowed = await Grounder.fromModel(model, tokenizer, { image: IMAGE, maxNewTokens: MAX_NEW, constrain: 'none' });
    const text = (await borrowed.ground(imageOf(sample), sample.instruction)).text;
    await borrowed[Symbol.asyncDispose]();
    expect((await byHand([sample])).texts[0]).toBe(text);
  });

  it('two adapters of different ranks mixed with the base in one batch answer as each served alone, and as loadAdapter', async () => {
    const a1 = join(work, 'adapter-u1');
    const a2 = join(work, 'adapter-u2');
    await trainAdapter(a1, '1', 4);
    await trainAdapter(a2, '2', 8);
    const batches: BatchStats[] = [];
    await using grounder = await Grounder.load(trained, { ...options, maxBatch: 8, onBatch: (stats) => batches.push(stats) });
    expect((await grounder.addAdapter('u1', a1)).rank).toBe(4);
    expect((await grounder.addAdapter('u2', a2)).rank).toBe(8);
    expect(grounder.adapters().map((a) => a.name).sort()).toEqual(['u1', 'u2']);

    const rows = [...samples.slice(0, 3), ...samples.slice(10, 13)];
    const users = ['u1', 'u2', null, 'u2', 'u1', null];
    const alone: string[] = [];
    for (const [i, s] of rows.entries()) alone.push((await grounder.ground(imageOf(s), s.instruction, { user: users[i] })).text);
    // The adapters matter: some row answers differently under each adapter than under the base model.
    const base = await Promise.all(rows.map((s) => grounder.ground(imageOf(s), s.instruction)));
    const underU1 = await Promise.all(rows.map((s) => grounder.ground(imageOf(s), s.instruction, { user: 'u1' })));
    const underU2 = await Promise.all(rows.map((s) => grounder.ground(imageOf(s), s.instruction, { user: 'u2' })));
    expect(underU1.some((r, i) => r.text !== base[i]!.text)).toBe(true);
    expect(underU2.some((r, i) => r.text !== underU1[i]!.text)).toBe(true);
    batches.length = 0;

    const mixed = await Promise.all(rows.map((s, i) => grounder.ground(imageOf(s), s.instruction, { user: users[i] })));
    expect(batches.map((b) => [b.size, b.adapters])).toEqual([[6, 2]]);
    expect(mixed.map((r) => r.text)).toEqual(alone);
    expect(mixed.map((r) => r.adapter)).toEqual(users);

    // The single-adapter path (the adapter attached into the model, as pigg eval --adapter does) agrees.
    const attached = await Qwen3VL.load(trained, { device: 'cpu', dtype: 'fp32' });
    try {
      await attached.loadAdapter(a1);
      const records = await predict(attached, tokenizer, rows, data, { settings, batchSize: 3, maxNewTokens: MAX_NEW });
      expect(records.map((r) => r.output)).toEqual(underU1.map((r) => r.text));
    } finally {
      attached.dispose();
    }

    expect(grounder.removeAdapter('u1')).toBe(true);
    expect(grounder.removeAdapter('u1')).toBe(false);
    const gone = await rejection(grounder.ground(imageOf(rows[0]!), rows[0]!.instruction, { user: 'u1' }));
    expect(gone.code).toBe('UNKNOWN_ADAPTER');
    expect(gone.message).toMatch(/adapters: u2/);
  });

  // Constrained decoding (lib/grounding/grammar.ts) on the untrained model, whose free answers are "\n" repeated.
  describe('constrained', () => {
    for (const [style, constrain] of [['pigg', 'auto'], ['qwen-json', 'auto'], ['pigg', 'point']] as const) {
      it(`${style} prompt, constrain ${constrain}: 20 answers all parse, in the grid, and stop before the budget`, async () => {
        const { answerGrammar } = await import('../lib/grounding/grammar.js');
        const grammarName = constrain === 'auto' ? style : constrain;
        const longest = longestAnswerBytes(answerGrammar(grammarName));
        expect(Number.isFinite(longest)).toBe(true);
        // Free decoding never stops within this budget on the untrained model; every constrained answer ends.
        const budget = longest + 2;
        const twenty = samples.slice(0, 20);
        await using free = await Grounder.load(base, { ...options, style, maxNewTokens: budget, maxBatch: 10 });
        const unconstrained = await free.groundSamples(twenty.slice(0, 2), data);
        expect(unconstrained.map((r) => [r.tokens, r.finishReason])).toEqual([[budget, 'length'], [budget, 'length']]);

        await using grounder = await Grounder.load(base, { ...options, style, constrain, maxNewTokens: budget, maxBatch: 10 });
        expect(grounder.constrain).toBe(grammarName);
        const results = await grounder.groundSamples(twenty, data);
        for (const [i, r] of results.entries()) {
          expect(r.parsed, r.text).toBe(true);
          for (const v of [r.grid.x, r.grid.y]) {
            expect(Number.isInteger(v)).toBe(true);
            expect(v).toBeGreaterThanOrEqual(0);
            expect(v).toBeLessThanOrEqual(1000);
          }
          expect(r.x).toBe((r.grid.x / 1000) * twenty[i]!.width);
          expect(r.tokens).toBeLessThan(budget);
          expect(r.finishReason).toBe('stop');
        }
        console.log(`${style}/${constrain}: longest answer ${longest} bytes; tokens ${results.map((r) => r.tokens).join(' ')}; e.g. ${JSON.stringify(results[0]!.text)}`);
      });
    }

    it('a budget below the longest answer bounds the referring so answers still complete; one too small for any is an error', async () => {
      const { answerGrammar } = await import('../lib/grounding/grammar.js');
      const longest = longestAnswerBytes(answerGrammar('pigg'));
      const minimal = longestAnswerBytes(answerGrammar('pigg', { maxReferringBytes: 0 })) + 1; // the answer without a referring
      const budget = minimal + 20;
      expect(budget).toBeLessThan(longest);
      await using grounder = await Grounder.load(base, { ...options, constrain: 'auto', maxNewTokens: budget, maxBatch: 10 });
      const results = await grounder.groundSamples(samples.slice(0, 10), data);
      for (const r of results) {
        expect(r.parsed, r.text).toBe(true);
        expect(r.finishReason).toBe('stop');
        expect(r.tokens).toBeLessThanOrEqual(budget);
      }
      // Per request too.
      const small = await grounder.ground(imageOf(samples[0]!), samples[0]!.instruction, { maxNewTokens: minimal });
      expect([small.parsed, small.finishReason]).toEqual([true, 'stop']);
      const tooSmall = await rejection(grounder.ground(imageOf(samples[0]!), samples[0]!.instruction, { maxNewTokens: minimal - 1 }));
      expect(tooSmall.code).toBe('INVALID_ARGUMENT');
      expect(tooSmall.message).toMatch(new RegExp(`use at least ${minimal}`));
      expect((await rejection(Grounder.load(base, { ...options, constrain: 'pigg', maxNewTokens: minimal - 1 }))).code).toBe('INVALID_ARGUMENT');
    });

    it('pigg eval: --constrain pigg answers always parse; without the flag it decodes freely, as PIGG', () => {
      const out = join(work, 'eval');
      const evalRun = (name: string, extra: string[]) => {
        execFileSync(process.execPath, [cli, 'eval', '--model', base, '--data', data, '--users', '1', '--out', out, '--name', name,
          '--max-pixels', String(IMAGE.maxPixels), '--max-new-tokens', '150', '--batch', '5', '--image-workers', '0', ...extra], { stdio: 'pipe' });
        return JSON.parse(readFileSync(join(out, name, 'summary.json'), 'utf8')).overall as { n: number; parse_failures: number };
      };
      const constrained = evalRun('constrained', ['--constrain', 'pigg']);
      expect(constrained).toMatchObject({ n: 10, parse_failures: 0 });
      const free = evalRun('free', []);
      expect(free).toMatchObject({ n: 10, parse_failures: 10 }); // the untrained model's "\n\n..." never parses
    });
  });
});
