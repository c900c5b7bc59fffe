// The decode loop's static KV cache (native/text.h): each decode step attends over the whole preallocated cache
// under a mask that admits the prompt's valid columns and the columns written so far. Checked against the model
// without any cache: step s's logits must be the logits of a forward over the prompt plus the first s new tokens,
// at its last position, for left-padded rows of different lengths, with and without an image.
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFixtureCase } from '../lib/engine/fixture.js';
import { Qwen3VL, type NamedTensors } from '../lib/engine/model.js';

const ROOT = resolve(import.meta.dirname, 'fixtures', 'qwen3vl-tiny');

/** A case's left-padded generation prompts (and its images). */
function prompts(name: string): NamedTensors {
  const inputs = readFixtureCase(join(ROOT, 'cases', name)).inputs;
  const out: NamedTensors = { input_ids: inputs.get('decode_input_ids')!, attention_mask: inputs.get('decode_attention_mask')! };
  for (const image of ['pixel_values', 'image_grid_thw']) if (inputs.has(image)) out[image] = inputs.get(image)!;
  return out;
}

/** The prompts with each row's first `count` new tokens appended (seen: mask 1). */
function extended(base: NamedTensors, tokens: number[][], count: number): NamedTensors {
  const [rows, length] = base.input_ids.shape;
  const width = length + count;
  const ids = new BigInt64Array(rows * width);
  const mask = new BigInt64Array(rows * width);
  const baseIds = base.input_ids.data as BigInt64Array;
  const baseMask = base.attention_mask.data as BigInt64Array;
  for (let r = 0; r < rows; r++) {
    ids.set(baseIds.subarray(r * length, (r + 1) * length), r * width);
    mask.set(baseMask.subarray(r * length, (r + 1) * length), r * width);
    for (let s = 0; s < count; s++) {
      ids[r * width + length + s] = BigInt(tokens[r][s]);
      mask[r * width + length + s] = 1n;
    }
  }
  return { ...base, input_ids: { dtype: 'I64', shape: [rows, width], data: ids }, attention_mask: { dtype: 'I64', shape: [rows, width], data: mask } };
}

let model: Qwen3VL;
beforeAll(async () => {
  model = await Qwen3VL.load(join(ROOT, 'models', 'tiny-untied'), { dtype: 'fp32' });
});
afterAll(() => model?.dispose());

describe('the static KV cache', () => {
  // c_text_only: two left-padded text rows of different lengths; a_single_image: one row with an image, whose new
  // tokens' positions continue after the image's M-RoPE positions. 19 new tokens: 18 fed back, so the cache has
  // columns past the last one written (the capacity is rounded up to a multiple of 8), which must stay masked.
  it.each(['c_text_only', 'a_single_image'])('%s: every decode step equals a cache-free forward over the tokens so far', async (name) => {
    const base = prompts(name);
    const newTokens = 19;
    const result = await model.generate(base, { maxNewTokens: newTokens, eosTokenIds: [], returnStepLogits: true });
    const [rows, steps, vocab] = result.tensors['generate.step_logits'].shape;
    expect([rows, steps]).toEqual([base.input_ids.shape[0], newTokens]);
    const stepLogits = result.tensors['generate.step_logits'].data as Float32Array;
    let worst = 0;
    for (let s = 0; s < steps; s++) {
      const inputs = extended(base, result.tokens, s);
      const logits = (await model.forward(inputs, { outputs: ['logits'] })).logits;
      const width = inputs.input_ids.shape[1];
      const data = logits.data as Float32Array;
      for (let r = 0; r < rows; r++) {
        const last = data.subarray((r * width + width - 1) * vocab, (r * width + width) * vocab);
        const step = stepLogits.subarray((r * steps + s) * vocab, (r * steps + s + 1) * vocab);
        for (let v = 0; v < vocab; v++) worst = Math.max(worst, Math.abs(last[v] - step[v]));
        // Greedy: the token taken at step s is the forward's argmax.
        let best = 0;
        for (let v = 1; v < vocab; v++) if (last[v] > last[best]) best = v;
        expect(result.tokens[r][s], `${name} row ${r} step ${s}`).toBe(best);
      }
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it('one new token feeds nothing back', async () => {
    const base = prompts('c_text_only');
    const full = await model.generate(base, { maxNewTokens: 4, eosTokenIds: [] });
    const one = await model.generate(base, { maxNewTokens: 1, eosTokenIds: [] });
    expect(one.tokens).toEqual(full.tokens.map((row) => row.slice(0, 1)));
    expect(one.tensors['generate.fed_position_ids'].shape).toEqual([3, 2, 0]);
    expect(full.tensors['generate.fed_position_ids'].shape).toEqual([3, 2, 3]);
  });
});
