// The engine's serving features on the tiny fixture models (CPU, fp32): named adapters beside the base weights
// with per-row selection in one generate batch (against the single-adapter path), aborting calls and rows
// (the model stays usable), load progress, streaming, the per-call timing and abort flags, and constrained
// decoding against the TypeScript reference masks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRandomModel } from '../lib/engine/configs.js';
import { Qwen3VL, type GenerateOptions, type NamedTensors } from '../lib/engine/model.js';
import { parseAnswer } from '../lib/data/parse.js';
import { advanceState, allowedTokens, answerGrammar, tokenBytes } from '../lib/grounding/grammar.js';
import { QwenTokenizer } from '../lib/processor/tokenizer.js';
import { readSafetensors } from '../lib/safetensors.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/', import.meta.url));
const UNTIED = join(FIXTURE, 'models', 'tiny-untied');
const INPUT_NAMES = ['input_ids', 'attention_mask', 'labels', 'pixel_values', 'image_grid_thw'];

function caseInputs(name: string): Map<string, NamedTensors[string]> {
  return readSafetensors(join(FIXTURE, 'cases', name, 'inputs.safetensors'));
}

function trainBatch(name: string): NamedTensors {
  const inputs = caseInputs(name);
  return Object.fromEntries(INPUT_NAMES.filter((n) => inputs.has(n)).map((n) => [n, inputs.get(n)!]));
}

/** A case's left-padded generation prompts (and its images). */
function prompts(name: string): NamedTensors {
  const inputs = caseInputs(name);
  const out: NamedTensors = { input_ids: inputs.get('decode_input_ids')!, attention_mask: inputs.get('decode_attention_mask')! };
  for (const image of ['pixel_values', 'image_grid_thw']) if (inputs.has(image)) out[image] = inputs.get(image)!;
  return out;
}

let root: string;
let adapterX: string;
let adapterY: string;

async function withModel<T>(fn: (model: Qwen3VL) => Promise<T>): Promise<T> {
  const model = await Qwen3VL.load(UNTIED, { dtype: 'fp32' });
  try {
    return await fn(model);
  } finally {
    model.dispose();
  }
}

/** Trains a LoRA adapter for a few steps (so it changes the answers) and saves it in PEFT layout. */
async function trainAdapter(dir: string, rank: number, learningRate: number, order: string[]): Promise<void> {
  await withModel(async (model) => {
    const trainer = await model.createTrainer({ learningRate, totalSteps: 6, lora: { rank, alpha: 2 * rank, dropout: 0 }, seed: rank });
    for (const name of [...order, ...order, ...order]) await trainer.step(trainBatch(name));
    await trainer.save(dir);
    trainer.dispose();
  });
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'pigg-serving-'));
  adapterX = join(root, 'x');
  adapterY = join(root, 'y');
  await trainAdapter(adapterX, 4, 3e-2, ['a_single_image', 'c_text_only']);
  await trainAdapter(adapterY, 2, 5e-2, ['c_text_only', 'a_single_image']);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const GREEDY: GenerateOptions = { maxNewTokens: 8, eosTokenIds: [], returnStepLogits: true };

function stepLogits(result: Awaited<ReturnType<Qwen3VL['generate']>>, row: number): Float32Array {
  const t = result.tensors['generate.step_logits'];
  const size = t.shape[1] * t.shape[2];
  return (t.data as Float32Array).subarray(row * size, (row + 1) * size);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

describe('adapters beside the base weights, chosen per row', () => {
  it('a batch mixing adapters (and none) equals each adapter attached alone, row by row', async () => {
    const batch = prompts('c_text_only');
    // The single-adapter path: a model with the adapter attached into its layers.
    const single = async (dir: string | null) =>
      withModel(async (model) => {
        if (dir) await model.loadAdapter(dir);
        return model.generate(batch, GREEDY);
      });
    const reference = { x: await single(adapterX), y: await single(adapterY), none: await single(null) };
    // The adapters do change the answers (otherwise the comparison below proves nothing).
    expect(maxAbsDiff(stepLogits(reference.x, 0), stepLogits(reference.none, 0))).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(stepLogits(reference.y, 0), stepLogits(reference.x, 0))).toBeGreaterThan(1e-2);

    await withModel(async (model) => {
      const x = await model.registerAdapter('x', adapterX);
      await model.registerAdapter('y', adapterY);
      expect(x).toMatchObject({ name: 'x', path: adapterX, rank: 4, alpha: 8, onDevice: true, lastUsed: 0 });
      // fp32 bytes of A [4, in] and B [out, 4] over the 4 layers x 7 projections of the tiny model.
      expect(x.bytes).toBeGreaterThan(0);
      expect(model.adapters().map((a) => [a.name, a.rank])).toEqual([['x', 4], ['y', 2]]);
      for (const rows of [['x', 'y'], ['y', 'x'], ['x', null], [null, 'y'], [null, null]] as const) {
        const mixed = await model.generate(batch, { ...GREEDY, adapters: [...rows] });
        rows.forEach((name, row) => {
          const ref = reference[name ?? 'none'];
          expect(mixed.tokens[row], `${rows} row ${row}`).toEqual(ref.tokens[row]);
          expect(maxAbsDiff(stepLogits(mixed, row), stepLogits(ref, row)), `${rows} row ${row}`).toBeLessThan(1e-4);
        });
      }
      expect(model.adapters().every((a) => a.lastUsed > 0)).toBe(true);
      // A batch with images too.
      const image = prompts('a_single_image');
      const withImage = await model.generate(image, { ...GREEDY, adapters: ['y'] });
      const imageReference = await withModel(async (m) => {
        await m.loadAdapter(adapterY);
        return m.generate(image, GREEDY);
      });
      expect(withImage.tokens).toEqual(imageReference.tokens);
      expect(maxAbsDiff(stepLogits(withImage, 0), stepLogits(imageReference, 0))).toBeLessThan(1e-4);
    });
  });

  it('unknown, removed and malformed adapters are clear errors; the base model is untouched', async () => {
    await withModel(async (model) => {
      const batch = prompts('c_text_only');
      const base = await model.generate(batch, GREEDY);
      await expect(model.generate(batch, { ...GREEDY, adapters: ['nobody', null] })).rejects.toThrow("unknown adapter 'nobody'");
      await expect(model.generate(batch, { ...GREEDY, adapters: ['x'] })).rejects.toThrow('adapters must have one entry per row (2), got 1');
      await expect(model.registerAdapter('bad', join(root, 'missing'))).rejects.toThrow(/adapter_config\.json: cannot read/);
      await model.registerAdapter('x', adapterX);
      expect(model.unregisterAdapter('x')).toBe(true);
      expect(model.unregisterAdapter('x')).toBe(false);
      await expect(model.generate(batch, { ...GREEDY, adapters: ['x', 'x'] })).rejects.toThrow("unknown adapter 'x'");
      const again = await model.generate(batch, GREEDY);
      expect(again.tokens).toEqual(base.tokens);
      expect(maxAbsDiff(stepLogits(again, 1), stepLogits(base, 1))).toBe(0);
    });
  });
});

describe('training beside inference', () => {
  const OPTIONS = { learningRate: 3e-2, totalSteps: 6, seed: 9 };

  it('an aside adapter trains as an attached one, while generate between steps sees the base model', async () => {
    const attachedDir = join(root, 'attached'), asideDir = join(root, 'aside');
    const batch = prompts('c_text_only');
    await withModel(async (model) => {
      const trainer = await model.createTrainer({ ...OPTIONS, lora: { rank: 4, alpha: 8, dropout: 0.1 } });
      for (const name of ['a_single_image', 'c_text_only', 'a_single_image']) await trainer.step(trainBatch(name));
      await trainer.save(attachedDir);
    });
    await withModel(async (model) => {
      const base = await model.generate(batch, GREEDY);
      const trainer = await model.createTrainer({ ...OPTIONS, lora: { rank: 4, alpha: 8, dropout: 0.1, aside: true } });
      for (const name of ['a_single_image', 'c_text_only', 'a_single_image']) {
        await trainer.step(trainBatch(name));
        const between = await model.generate(batch, GREEDY);
        expect(maxAbsDiff(stepLogits(between, 0), stepLogits(base, 0))).toBe(0);
      }
      await trainer.save(asideDir);
      // Served per row right away, beside the base model.
      await model.registerAdapter('fresh', asideDir);
      const mixed = await model.generate(batch, { ...GREEDY, adapters: ['fresh', null] });
      expect(maxAbsDiff(stepLogits(mixed, 1), stepLogits(base, 1))).toBe(0);
      expect(maxAbsDiff(stepLogits(mixed, 0), stepLogits(base, 0))).toBeGreaterThan(1e-3);
      await expect(model.createTrainer({ ...OPTIONS, lora: { aside: true, loraOnly: false } })).rejects.toThrow('loraAside trains beside inference');
    });
    const attached = readSafetensors(join(attachedDir, 'adapter_model.safetensors'));
    const aside = readSafetensors(join(asideDir, 'adapter_model.safetensors'));
    expect([...aside.keys()]).toEqual([...attached.keys()]);
    for (const [name, tensor] of attached) expect(maxAbsDiff(aside.get(name)!.data as Float32Array, tensor.data as Float32Array), name).toBe(0);
  });

  it('init continues from an adapter: its rank and weights', async () => {
    const dir = join(root, 'continued');
    await withModel(async (model) => {
      const trainer = await model.createTrainer({ learningRate: 0, totalSteps: 1, lora: { rank: 16, init: adapterY, aside: true } });
      await trainer.step(trainBatch('c_text_only'));
      await trainer.save(dir);
      await expect(model.createTrainer({ lora: { init: join(root, 'missing') } })).rejects.toThrow(/adapter_config\.json: cannot read/);
    });
    const original = readSafetensors(join(adapterY, 'adapter_model.safetensors'));
    const continued = readSafetensors(join(dir, 'adapter_model.safetensors'));
    for (const [name, tensor] of original) {
      expect(continued.get(name)!.shape, name).toEqual(tensor.shape);
      expect(maxAbsDiff(continued.get(name)!.data as Float32Array, tensor.data as Float32Array), name).toBe(0);
    }
  });
});

describe('aborting', () => {
  // Many steps without EOS, so an abort lands mid-call whatever the machine's speed.
  const LONG: GenerateOptions = { maxNewTokens: 60_000, eosTokenIds: [] };

  it('an aborted generate rejects with AbortError and the model stays usable', async () => {
    await withModel(async (model) => {
      const batch = prompts('c_text_only');
      const before = await model.generate(batch, GREEDY);
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 50);
      await expect(model.generate(batch, { ...LONG, signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
      const after = await model.generate(batch, GREEDY);
      expect(after.tokens).toEqual(before.tokens);
      expect(maxAbsDiff(stepLogits(after, 0), stepLogits(before, 0))).toBe(0);
      // Already aborted: rejects before any work, with the signal's own reason.
      const reason = new Error('client went away');
      await expect(model.generate(batch, { ...GREEDY, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
      await expect(model.forward(batch, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    });
  });

  it('aborting one row stops that row alone; the others decode as without it', async () => {
    await withModel(async (model) => {
      const batch = prompts('c_text_only');
      const steps = 400;
      const reference = await model.generate(batch, { maxNewTokens: steps, eosTokenIds: [] });
      const row = new AbortController();
      const result = await model.generate(batch, { maxNewTokens: steps, eosTokenIds: [], rowSignals: [undefined, AbortSignal.abort()] });
      expect(result.aborted).toEqual([false, true]);
      expect(result.tokens[0]).toEqual(reference.tokens[0]);
      // The aborted row is padded from the first step (pad id of the tiny config).
      expect(new Set(result.tokens[1])).toEqual(new Set([result.tokens[1]![0]]));
      expect(result.tokens[1]![0]).not.toBe(reference.tokens[1]![0]);
      row.abort();
      // Every row aborted: the call ends at once, without an error.
      const all = await model.generate(batch, { ...LONG, rowSignals: [row.signal, AbortSignal.abort()] });
      expect(all.aborted).toEqual([true, true]);
      expect(all.tokens[0]!.length).toBe(1);
    });
  });

  it('an aborted training step applies no update and the trainer goes on', async () => {
    await withModel(async (model) => {
      const trainer = await model.createTrainer({ learningRate: 1e-2, totalSteps: 4 });
      await expect(trainer.step(trainBatch('a_single_image'), { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
      expect((await trainer.info()).step).toBe(0);
      const report = await trainer.step(trainBatch('a_single_image'));
      expect(report.step).toBe(1);
      expect(Number.isFinite(report.loss)).toBe(true);
      trainer.dispose();
      await expect(trainer.info()).rejects.toThrow('the trainer was disposed');
    });
  });

  it('loading reports progress up to 1 and can be aborted', async () => {
    const fractions: number[] = [];
    const model = await Qwen3VL.load(UNTIED, { dtype: 'fp32', onProgress: (f) => fractions.push(f) });
    model.dispose();
    expect(fractions.at(-1)).toBe(1);
    expect([...fractions].sort((a, b) => a - b)).toEqual(fractions);
    await expect(Qwen3VL.load(UNTIED, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('streaming', () => {
  it('onStep sees every step of every row, in order, matching the final tokens', async () => {
    await withModel(async (model) => {
      const steps: number[][] = [];
      const result = await model.generate(prompts('c_text_only'), { ...GREEDY, onStep: (tokens) => steps.push(tokens) });
      // The last calls may land after the promise: give the event loop a few turns.
      for (let i = 0; i < 20 && steps.length < result.tokens[0]!.length; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(steps.length).toBe(8);
      expect([0, 1].map((row) => steps.map((step) => step[row]))).toEqual(result.tokens);
    });
  });
});

describe('constrained decoding', () => {
  it('every step picks the best token the reference mask allows, and every answer parses', async () => {
    // A tiny random model with the real vocabulary: unconstrained, its answers are noise.
    const dir = join(root, 'tiny-real-vocab');
    await initRandomModel('tiny', dir, { dtype: 'fp32', seed: 3 });
    const tokenizer = QwenTokenizer.fromDir(dir);
    const model = await Qwen3VL.load(dir, { dtype: 'fp32' });
    try {
      const vocabulary = tokenBytes(tokenizer, (await model.info()).config.text.vocab);
      const eos = [...tokenizer.eosIds];
      const batch = prompts('c_text_only'); // text-only prompts; their ids exist in every Qwen vocabulary
      const visited = new Set<string>();
      for (const style of ['pigg', 'qwen-json', 'point'] as const) {
        const grammar = answerGrammar(style, { maxReferringBytes: 24 });
        const handle = model.createGrammar(grammar, vocabulary, eos);
        const result = await model.generate(batch, { maxNewTokens: 200, eosTokenIds: eos, returnStepLogits: true, grammars: [handle, handle] });
        const logits = result.tensors['generate.step_logits'];
        const [, steps, vocab] = logits.shape;
        result.tokens.forEach((row, r) => {
          let state = grammar.start;
          let step = 0;
          for (; step < steps; step++) {
            visited.add(`${style}:${state}`);
            const allowed = allowedTokens(grammar, vocabulary, state, eos);
            const stepLogits = (logits.data as Float32Array).subarray((r * steps + step) * vocab, (r * steps + step + 1) * vocab);
            let best = -1;
            for (let t = 0; t < vocab; t++) if (allowed[t] && (best < 0 || stepLogits[t]! > stepLogits[best]!)) best = t;
            expect(row[step], `${style} row ${r} step ${step}`).toBe(best);
            if (eos.includes(best)) break;
            state = advanceState(grammar, vocabulary, state, best);
          }
          expect(eos).toContain(row[step]);
          const answer = parseAnswer(tokenizer.decode(row, { skipSpecialTokens: true }));
          expect(answer.ok, `${style} row ${r}`).toBe(true);
          for (const v of [answer.x, answer.y]) expect(Number.isInteger(v) && v >= 0 && v <= 1000).toBe(true);
        });
      }
      // The walk went through many states (the free-text referring included), not just a fixed path.
      expect(visited.size).toBeGreaterThan(40);
      await expect(model.generate(batch, { maxNewTokens: 8, grammars: [null] })).rejects.toThrow('grammars must have one entry per row (2), got 1');
    } finally {
      model.dispose();
    }
  });

  it('a grammar built for another vocabulary, or with bad tables, is a clear error', async () => {
    await withModel(async (model) => {
      const vocabulary = tokenBytes(QwenTokenizer.bundled(), 151_936);
      const handle = model.createGrammar(answerGrammar('point'), vocabulary, [151_645]);
      await expect(model.generate(prompts('c_text_only'), { maxNewTokens: 4, eosTokenIds: [151_645], grammars: [handle, null] }))
        .rejects.toThrow('the grammar was built for a vocabulary of 151936 tokens, the model has 2048');
      const grammar = answerGrammar('point');
      expect(() => model.createGrammar({ ...grammar, start: grammar.states }, vocabulary, [151_645])).toThrow(/start state \d+ is out of range/);
      expect(() => model.createGrammar(grammar, vocabulary, [])).toThrow('constrained decoding needs at least one EOS id');
    });
  });
});

describe('generate reports', () => {
  it('timing per phase and no aborted rows', async () => {
    await withModel(async (model) => {
      const result = await model.generate(prompts('a_single_image'), GREEDY);
      expect(result.aborted).toEqual([false]);
      for (const phase of ['vision', 'prefill', 'decode'] as const) expect(Number.isFinite(result.timing[phase])).toBe(true);
    });
  });
});
