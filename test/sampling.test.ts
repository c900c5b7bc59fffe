// Sampled decoding (native/picker.cpp): the token picker on fixed logits against the distribution transformers'
// warpers leave (RepetitionPenalty, Temperature, TopK, TopP), computed here independently; seeded rows are
// reproducible and independent of their batch; in the decode loop of the tiny fixture model the repetition penalty
// acts on the prompt and the answer so far; generation_config.json's settings with transformers' defaults.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/engine/native.js';
import { Qwen3VL, type NamedTensors } from '../lib/engine/model.js';
import { checkSampling, generationConfigSampling, type SamplingOptions } from '../lib/engine/sampling.js';
import { readSafetensors } from '../lib/safetensors.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/', import.meta.url));
const UNTIED = join(FIXTURE, 'models', 'tiny-untied');

async function draw(logits: number[][], rows: Array<SamplingOptions | null>, draws: number): Promise<number[][]> {
  const vocab = logits[0]!.length;
  const tensor = { dtype: 'F32' as const, shape: [logits.length, vocab], data: Float32Array.from(logits.flat()) };
  const out = await native().sampleTokens({ logits: tensor }, rows.map((r) => r && checkSampling(r)), draws);
  const data = out.tokens!.data as BigInt64Array;
  // tokens [draws, rows] -> per row its draws
  return rows.map((_, r) => Array.from({ length: draws }, (_, d) => Number(data[d * rows.length + r])));
}

/** The distribution transformers samples from: temperature, then top-k (ties with the k-th kept), then top-p. */
function filteredSoftmax(logits: number[], { temperature, topK = 0, topP = 1 }: SamplingOptions): number[] {
  const z = logits.map((l) => l / temperature);
  const sorted = [...z].sort((a, b) => b - a);
  let keep = z.map(() => true);
  if (topK > 0) keep = z.map((v) => v >= sorted[Math.min(topK, z.length) - 1]!);
  const softmax = (mask: boolean[]) => {
    const max = Math.max(...z.filter((_, i) => mask[i]));
    const e = z.map((v, i) => (mask[i] ? Math.exp(v - max) : 0));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  };
  const p = softmax(keep);
  // TopP: ascending by probability, drop while the cumulative mass stays <= 1 - top_p; the most likely one stays.
  const ascending = p.map((v, i) => [v, i] as const).filter(([, i]) => keep[i]).sort((a, b) => a[0] - b[0]);
  let mass = 0;
  ascending.forEach(([v, i], j) => {
    mass += v;
    if (mass <= 1 - topP && j < ascending.length - 1) keep[i] = false;
  });
  return softmax(keep);
}

const LOGITS = [
  [2.0, 1.5, 1.2, 0.3, -0.4, 0.9, -1.0, 2.4, 0.0, -2.5, 1.1, 0.6],
  [0.1, 3.0, -0.5, 2.2, 2.2, 0.4, 1.7, -3.0, 0.8, 1.0, -0.2, 2.6],
];
// Ties with the 3rd largest logit: top-k 3 keeps all six tokens at 1.0 (a masked token is -inf). Top-p is left out
// here: which of tied tokens it drops depends on the sort order, in transformers too.
const TIES = [2.5, 1.0, -1.0, 1.0, 1.0, 0.5, 3.0, 1.0, 1.0, 1.0, -Infinity, 0.2];

describe('the token picker on fixed logits', () => {
  const DRAWS = 20000;
  const SETTINGS: SamplingOptions[] = [
    { temperature: 1 },
    { temperature: 0.7, topP: 0.8, topK: 20, seed: 3 }, // Qwen3-VL Instruct's generation_config
    { temperature: 1.3, topK: 4, seed: 5 },
    { temperature: 0.5, topP: 0.6, seed: 7 },
  ];

  it.each([...SETTINGS.map((settings) => [settings, LOGITS] as const), [{ temperature: 1.3, topK: 3, seed: 8 }, [TIES]] as const])(
    '%j: empirical frequencies match the filtered softmax within 6 sigma; filtered tokens never drawn', async (settings, rows) => {
    for (const logits of rows) {
      const [tokens] = await draw([logits], [settings], DRAWS);
      const expected = filteredSoftmax(logits, settings);
      const counts = new Array<number>(logits.length).fill(0);
      for (const t of tokens!) counts[t]!++;
      expected.forEach((p, token) => {
        if (p === 0) expect(counts[token], `token ${token}`).toBe(0);
        else expect(Math.abs(counts[token]! / DRAWS - p), `token ${token} (p ${p.toFixed(4)})`).toBeLessThanOrEqual(6 * Math.sqrt((p * (1 - p)) / DRAWS));
      });
      // The filters cut something wherever they should: the test would notice a picker that ignores them.
      if (settings.topK === 4 || (settings.topP ?? 1) < 1) expect(expected.filter((p) => p === 0).length).toBeGreaterThan(0);
      if (logits === TIES) expect(expected.filter((p) => p > 0)).toHaveLength(8);
    }
  });

  it('a seed repeats its draws, another seed draws differently, and a row does not depend on its batch', async () => {
    const settings = { temperature: 1, seed: 11 };
    const [alone] = await draw([LOGITS[0]!], [settings], 200);
    const [again] = await draw([LOGITS[0]!], [settings], 200);
    expect(again).toEqual(alone);
    const [other] = await draw([LOGITS[0]!], [{ ...settings, seed: 12 }], 200);
    expect(other).not.toEqual(alone);
    const batched = await draw([LOGITS[1]!, LOGITS[0]!, LOGITS[0]!], [{ temperature: 0.9, seed: 1 }, settings, null], 200);
    expect(batched[1]).toEqual(alone);
    // temperature 0 or null: the most likely token every time
    expect(new Set(batched[2])).toEqual(new Set([7]));
    const [zero] = await draw([LOGITS[1]!], [{ temperature: 0, seed: 9 }], 20);
    expect(new Set(zero)).toEqual(new Set([1]));
  });

  it('checks its settings', () => {
    expect(() => checkSampling({ temperature: -1 })).toThrow('sampling temperature must be a number >= 0, got -1');
    expect(() => checkSampling({ temperature: 1, topP: 0 })).toThrow('sampling topP must be in (0, 1], got 0');
    expect(() => checkSampling({ temperature: 1, topK: 1.5 })).toThrow('sampling topK must be an integer >= 0, got 1.5');
    expect(checkSampling({ temperature: 0.7 })).toEqual({ temperature: 0.7, topP: 1, topK: 0, repetitionPenalty: 1, seed: 0 });
  });
});

/** The case's left-padded prompts. */
function prompts(name: string): NamedTensors {
  const inputs = readSafetensors(join(FIXTURE, 'cases', name, 'inputs.safetensors'));
  const out: NamedTensors = { input_ids: inputs.get('decode_input_ids')!, attention_mask: inputs.get('decode_attention_mask')! };
  for (const image of ['pixel_values', 'image_grid_thw']) if (inputs.has(image)) out[image] = inputs.get(image)!;
  return out;
}

describe('sampling in the decode loop (tiny fixture model)', () => {
  it('repetition penalty: each greedy pick is the argmax of the penalized step logits over the prompt and the answer so far', async () => {
    const model = await Qwen3VL.load(UNTIED, { dtype: 'fp32' });
    try {
      const inputs = prompts('b_batch2_rightpad');
      const penalty = 1.8;
      const plain = await model.generate(inputs, { maxNewTokens: 12, eosTokenIds: [], returnStepLogits: true });
      const result = await model.generate(inputs, { maxNewTokens: 12, eosTokenIds: [], returnStepLogits: true, sampling: [{ temperature: 0, repetitionPenalty: penalty }, null] });
      const [rows, length] = inputs.input_ids!.shape;
      const ids = inputs.input_ids!.data as BigInt64Array;
      const mask = inputs.attention_mask!.data as BigInt64Array;
      const logits = result.tensors['generate.step_logits']!;
      const vocab = logits.shape[2]!;
      const steps = result.tokens[0]!.length;
      let changed = 0;
      for (let r = 0; r < rows; r++) {
        const seen = new Set<number>();
        for (let i = 0; i < length; i++) if (mask[r * length + i] === 1n) seen.add(Number(ids[r * length + i]));
        for (let s = 0; s < steps; s++) {
          const row = (logits.data as Float32Array).subarray((r * steps + s) * vocab, (r * steps + s + 1) * vocab);
          let best = 0;
          let bestScore = -Infinity;
          row.forEach((l, token) => {
            const score = r === 0 && seen.has(token) ? (l < 0 ? l * Math.fround(penalty) : l / Math.fround(penalty)) : l;
            if (score > bestScore) [best, bestScore] = [token, score];
          });
          expect(result.tokens[r]![s], `row ${r} step ${s}`).toBe(best);
          seen.add(result.tokens[r]![s]!);
        }
        if (r === 1) expect(result.tokens[1]).toEqual(plain.tokens[1]); // the other row decodes as without sampling
      }
      changed = result.tokens[0]!.filter((t, s) => t !== plain.tokens[0]![s]).length;
      expect(changed).toBeGreaterThan(0); // the penalty changes row 0's answer
    } finally {
      model.dispose();
    }
  });

  it('seeded sampling repeats itself and a row gives the same tokens alone or in a batch', async () => {
    const model = await Qwen3VL.load(UNTIED, { dtype: 'fp32' });
    try {
      const inputs = prompts('b_batch2_rightpad');
      const sampling = [{ temperature: 1.5, topP: 0.95, topK: 50, seed: 21 }, { temperature: 1.5, seed: 22 }];
      const first = await model.generate(inputs, { maxNewTokens: 10, eosTokenIds: [], sampling });
      const second = await model.generate(inputs, { maxNewTokens: 10, eosTokenIds: [], sampling });
      expect(second.tokens).toEqual(first.tokens);
      const greedy = await model.generate(inputs, { maxNewTokens: 10, eosTokenIds: [] });
      expect(first.tokens[0]).not.toEqual(greedy.tokens[0]);
      const reseeded = await model.generate(inputs, { maxNewTokens: 10, eosTokenIds: [], sampling: [sampling[0]!, { ...sampling[1]!, seed: 99 }] });
      expect(reseeded.tokens[0]).toEqual(first.tokens[0]);
      expect(reseeded.tokens[1]).not.toEqual(first.tokens[1]);
    } finally {
      model.dispose();
    }
  });
});

describe('generationConfigSampling', () => {
  it("reads do_sample's settings with transformers' defaults, and greedy without do_sample", () => {
    const dir = mkdtempSync(join(tmpdir(), 'pigg-genconfig-'));
    try {
      const write = (config: object) => writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(config));
      write({ do_sample: true, top_k: 20, top_p: 0.8, temperature: 0.7, repetition_penalty: 1.0 });
      expect(generationConfigSampling(dir, 5)).toEqual({ temperature: 0.7, topP: 0.8, topK: 20, repetitionPenalty: 1, seed: 5 });
      write({ do_sample: true });
      expect(generationConfigSampling(dir)).toEqual({ temperature: 1, topP: 1, topK: 50, repetitionPenalty: 1, seed: 0 });
      write({ do_sample: false, temperature: 0.7 });
      expect(generationConfigSampling(dir)).toBeNull();
      write({ do_sample: true, top_p: 2 });
      expect(() => generationConfigSampling(dir)).toThrow(`${join(dir, 'generation_config.json')}: sampling topP must be in (0, 1], got 2`);
      rmSync(join(dir, 'generation_config.json'));
      expect(generationConfigSampling(dir)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
