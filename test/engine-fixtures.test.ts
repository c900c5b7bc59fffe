// The golden qwen3vl-tiny fixtures through the native engine: every case in fp32 from the F32 and from the BF16
// weight folder, bf16 compute within the README's measured bounds, `fixture run` output completeness, and
// greedy generation stopping at EOS.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkFixtureCase, compareFixture, readFixtureCase, runFixtureCase, type CheckRow } from '../lib/engine/fixture.js';
import { Qwen3VL, type NamedTensors } from '../lib/engine/model.js';
import { readSafetensors, toFloat64, type HostTensor } from '../lib/safetensors.js';

const ROOT = resolve(import.meta.dirname, 'fixtures', 'qwen3vl-tiny');
const CASES = ['a_single_image', 'b_batch2_rightpad', 'c_text_only'] as const;
const caseDir = (name: string) => join(ROOT, 'cases', name);

interface CaseMeta {
  model: string;
  loss: number;
  generated_tokens: number[][];
  min_greedy_top1_top2_margin: number;
  outputs: Record<string, unknown>;
}
const meta = (name: string): CaseMeta => JSON.parse(readFileSync(join(caseDir(name), 'case.json'), 'utf8'));

function row(rows: CheckRow[], name: string): CheckRow {
  const found = rows.find((r) => r.name === name);
  if (!found) throw new Error(`no check row '${name}' (rows: ${rows.map((r) => r.name).join(', ')})`);
  return found;
}

function failures(rows: CheckRow[]): string[] {
  return rows.filter((r) => !r.ok).map((r) => `${r.name}: diff ${r.diff} tolerance ${r.tolerance} ${r.note ?? ''}`);
}

/** Every output the fixture records except gradients (which `fixture run` does not compute). */
function expectedForwardNames(name: string): string[] {
  return Object.keys(meta(name).outputs).filter((n) => !n.startsWith('grad.')).sort();
}

describe.each(CASES)('case %s', (name) => {
  const m = meta(name);
  const modelDir = resolve(caseDir(name), m.model);

  it('fp32 from the case model: every row ok, tight diffs', async () => {
    const rows = await checkFixtureCase(caseDir(name));
    expect(failures(rows)).toEqual([]);
    // Every recorded tensor was compared (none reported 'not produced'); gradients under the relative bound.
    expect(rows.map((r) => r.name).sort()).toEqual(Object.keys(m.outputs).sort());
    for (const r of rows) expect(r.kind, r.name).not.toBe('info');
    const grads = rows.filter((r) => r.name.startsWith('grad.'));
    expect(grads.length).toBeGreaterThanOrEqual(5);
    for (const g of grads) {
      expect(g.kind, g.name).toBe('rel');
      expect(g.diff, g.name).toBeLessThanOrEqual(g.tolerance);
    }
    expect(row(rows, 'logits').diff).toBeLessThan(1e-3);
    expect(row(rows, 'logits').diff).toBeLessThan(1e-4); // measured ~3e-5
    expect(row(rows, 'generate.step_logits').diff).toBeLessThan(1e-4);
    expect(row(rows, 'loss').diff).toBeLessThan(1e-5);
    expect(row(rows, 'last_hidden_state').diff).toBeLessThan(1e-4);
    expect(row(rows, 'decoder_layer_outputs').diff).toBeLessThan(1e-4);
    for (const exact of ['position_ids', 'rope_deltas', 'rope_deltas_unpadded', 'generate.tokens', 'generate.fed_position_ids',
      'generate.rope_deltas', 'generate.rope_deltas_unpadded']) {
      expect(row(rows, exact).diff, exact).toBe(0);
    }
    expect(row(rows, 'text_rotary_cos').diff).toBeLessThan(1e-5);
    if (name !== 'c_text_only') {
      for (const v of ['vision_patch_embed', 'vision_pos_embed', 'vision_rotary_cos', 'vision_rotary_sin', 'vision_blocks_out', 'image_embeds',
        'deepstack_embeds.0', 'deepstack_embeds.1', 'inputs_embeds']) {
        expect(row(rows, v).diff, v).toBeLessThan(1e-4);
      }
    } else {
      expect(row(rows, 'inputs_embeds').diff).toBe(0); // a pure embedding gather
      expect(rows.some((r) => r.name.startsWith('vision_') || r.name === 'image_embeds')).toBe(false);
    }
  });

  it('fp32 from the -bf16 weight folder gives the same results', async () => {
    const bf16Dir = `${modelDir}-bf16`;
    const rows = await checkFixtureCase(caseDir(name), { model: bf16Dir });
    expect(failures(rows)).toEqual([]);
    expect(row(rows, 'logits').diff).toBeLessThan(1e-4);
    expect(row(rows, 'loss').diff).toBeLessThan(1e-5);
    expect(row(rows, 'generate.tokens').diff).toBe(0);
    // Upcasting BF16 reproduces the F32 file bit for bit, so the two runs agree exactly.
    const fromF32 = await runFixtureCase(caseDir(name));
    const fromBf16 = await runFixtureCase(caseDir(name), { model: bf16Dir });
    for (const tensor of ['logits', 'loss', 'generate.step_logits', 'last_hidden_state']) {
      expect(Buffer.from(fromBf16[tensor].data.buffer).equals(Buffer.from(fromF32[tensor].data.buffer)), tensor).toBe(true);
    }
  });

  it('bf16 compute stays within the README bounds', async () => {
    const rows = await checkFixtureCase(caseDir(name), { dtype: 'bf16' });
    expect(failures(rows)).toEqual([]);
    const logits = row(rows, 'logits');
    expect(logits.tolerance).toBe(0.5);
    expect(logits.diff).toBeLessThanOrEqual(0.5);
    expect(logits.diff).toBeGreaterThan(1e-3); // really computed in bf16, not silently fp32
    expect(row(rows, 'loss').diff).toBeLessThanOrEqual(5e-2);
    expect(row(rows, 'generate.step_logits').diff).toBeLessThanOrEqual(0.5);
    const tokens = row(rows, 'generate.tokens');
    expect(tokens.ok).toBe(true);
    expect(tokens.note).toMatch(/^\d+ of \d+ tokens before a margin < 0.5$/);
    expect(Number(tokens.note!.split(' ')[0])).toBeGreaterThanOrEqual(5);
    for (const exact of ['position_ids', 'rope_deltas', 'generate.fed_position_ids']) expect(row(rows, exact).diff, exact).toBe(0);
  });

  it('fixture run returns every recorded tensor except grad.*, with the recorded shapes and dtypes', async () => {
    const outputs = await runFixtureCase(caseDir(name));
    const expected = readSafetensors(join(caseDir(name), 'outputs.safetensors'));
    const wanted = [...expected.keys()].filter((n) => !n.startsWith('grad.')).sort();
    expect(wanted).toEqual(expectedForwardNames(name));
    for (const tensorName of wanted) {
      expect(outputs[tensorName], tensorName).toBeDefined();
      expect(outputs[tensorName].shape, tensorName).toEqual(expected.get(tensorName)!.shape);
      expect(outputs[tensorName].dtype, tensorName).toBe(expected.get(tensorName)!.dtype);
    }
    // Anything beyond the forward/generate outputs is a gradient of the case's grad_params, nothing else.
    const extra = Object.keys(outputs).filter((n) => !wanted.includes(n)).sort();
    expect(extra).toEqual([...expected.keys()].filter((n) => n.startsWith('grad.') && outputs[n]).sort());
    // The recorded greedy tokens and loss from case.json.
    const tokens = outputs['generate.tokens'];
    expect(Array.from(tokens.data as BigInt64Array, Number)).toEqual(m.generated_tokens.flat());
    expect(Math.abs((outputs.loss.data as Float32Array)[0] - m.loss)).toBeLessThan(1e-5);
  });
});

/** Decode-prompt inputs of a case (left padded), named as generate expects them. */
function decodeInputs(name: string): NamedTensors {
  const inputs = readFixtureCase(caseDir(name)).inputs;
  const out: NamedTensors = { input_ids: inputs.get('decode_input_ids')!, attention_mask: inputs.get('decode_attention_mask')! };
  if (inputs.has('pixel_values')) {
    out.pixel_values = inputs.get('pixel_values')!;
    out.image_grid_thw = inputs.get('image_grid_thw')!;
  }
  return out;
}

describe('generation stops at EOS', () => {
  // c_text_only greedy tokens: row 0 [709, 678, 1293, ...], row 1 [502, 1469, 1698, ...].
  const greedy = meta('c_text_only').generated_tokens;
  const PAD = 1755; // <|endoftext|>, text_config.bos_token_id / generation_config pad_token_id
  let tmp: string;
  let model: Qwen3VL;
  let withGenerationConfig: Qwen3VL;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'pigg-eos-'));
    // A copy of tiny-untied whose generation_config.json adds row 0's third greedy token to the stop ids,
    // so the model's *default* EOS (no eosTokenIds option) stops that row early.
    const copy = join(tmp, 'tiny-untied-eos');
    cpSync(join(ROOT, 'models', 'tiny-untied'), copy, { recursive: true });
    writeFileSync(join(copy, 'generation_config.json'), JSON.stringify({ eos_token_id: [1757, greedy[0][2]], pad_token_id: PAD }));
    model = await Qwen3VL.load(join(ROOT, 'models', 'tiny-untied'));
    withGenerationConfig = await Qwen3VL.load(copy);
  });
  afterAll(() => {
    model?.dispose();
    withGenerationConfig?.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('the fixture tokens are EOS-free, so the default EOS (<|im_end|>) does not change them', async () => {
    const info = await model.info();
    expect(info.config.eosTokenIds).toEqual([1757]);
    expect(info.config.padTokenId).toBe(PAD);
    expect(greedy.flat()).not.toContain(1757);
    const result = await model.generate(decodeInputs('c_text_only'), { maxNewTokens: 8 });
    expect(result.tokens).toEqual(greedy);
  });

  it('default EOS from generation_config.json stops one row and pads it, the other row runs on unchanged', async () => {
    const info = await withGenerationConfig.info();
    expect(info.config.eosTokenIds).toEqual([1757, greedy[0][2]]);
    expect(info.config.padTokenId).toBe(PAD);
    const result = await withGenerationConfig.generate(decodeInputs('c_text_only'), { maxNewTokens: 8, returnStepLogits: true });
    expect(result.tokens[0]).toEqual([greedy[0][0], greedy[0][1], greedy[0][2], PAD, PAD, PAD, PAD, PAD]);
    expect(result.tokens[1]).toEqual(greedy[1]);
    expect(result.tensors['generate.tokens'].shape).toEqual([2, 8]);
    expect(result.tensors['generate.step_logits'].shape).toEqual([2, 8, 2048]);
    // The unaffected row's step logits match the fixture (its decoding did not depend on row 0's padding).
    const expected = toFloat64(readSafetensors(join(caseDir('c_text_only'), 'outputs.safetensors')).get('generate.step_logits')!);
    const got = toFloat64(result.tensors['generate.step_logits']);
    let maxDiff = 0;
    for (let i = 8 * 2048; i < 16 * 2048; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - expected[i]));
    expect(maxDiff).toBeLessThan(1e-3);
  });

  it('an empty eosTokenIds overrides the configured stop ids and never stops', async () => {
    const result = await withGenerationConfig.generate(decodeInputs('c_text_only'), { maxNewTokens: 8, eosTokenIds: [] });
    expect(result.tokens).toEqual(greedy);
  });

  it('explicit eosTokenIds: the batch stops as soon as every row has finished', async () => {
    // Row 0 finishes at step 2 (1293), row 1 at step 2 (1698): three tokens, then stop.
    const result = await model.generate(decodeInputs('c_text_only'), { maxNewTokens: 8, eosTokenIds: [greedy[0][2], greedy[1][2]], returnStepLogits: true });
    expect(result.tokens).toEqual([greedy[0].slice(0, 3), greedy[1].slice(0, 3)]);
    expect(result.tensors['generate.step_logits'].shape).toEqual([2, 3, 2048]);
    expect(result.tensors['generate.fed_position_ids'].shape).toEqual([3, 2, 2]);
  });

  it('explicit eosTokenIds: rows finishing at different steps are padded after their EOS', async () => {
    // Row 1 finishes at step 1 (1469); row 0 at step 4 (1155); maxNewTokens 6.
    const result = await model.generate(decodeInputs('c_text_only'), { maxNewTokens: 6, eosTokenIds: [greedy[1][1], greedy[0][4]] });
    expect(result.tokens[0]).toEqual(greedy[0].slice(0, 5));
    expect(result.tokens[1]).toEqual([greedy[1][0], greedy[1][1], PAD, PAD, PAD]);
  });

  it('single-image case: EOS at the token produced at step 2 (first occurrence) stops there', async () => {
    const aGreedy = meta('a_single_image').generated_tokens[0]; // [326, 1155, 326, ...]: 1155 first appears at step 1
    const untied = model; // a_single_image uses tiny-untied too
    const eos = aGreedy[5]; // 1629, first produced at step 5
    expect(aGreedy.indexOf(eos)).toBe(5);
    const result = await untied.generate(decodeInputs('a_single_image'), { maxNewTokens: 8, eosTokenIds: [eos] });
    expect(result.tokens).toEqual([aGreedy.slice(0, 6)]);
  });
});

describe('fixture helpers', () => {
  it('compareFixture compares step logits up to and including the first token that differs', () => {
    const tokens = (data: number[]): HostTensor => ({ dtype: 'I64', shape: [1, 3], data: BigInt64Array.from(data.map(BigInt)) });
    const logits = (data: number[]): HostTensor => ({ dtype: 'F32', shape: [1, 3, 2], data: Float32Array.from(data) });
    // Recorded: tokens 0, 1, 1 (margins 2, 0.2, 2). The run picks 0 at step 1 (a low-margin flip), then its step 2
    // follows another token: its logits are not the recorded ones' to compare.
    const expected = new Map([['generate.tokens', tokens([0, 1, 1])], ['generate.step_logits', logits([2, 0, 0.4, 0.6, 0, 2])]]);
    const check = (stepLogits: number[]) => compareFixture(expected, { 'generate.tokens': tokens([0, 0, 1]), 'generate.step_logits': logits(stepLogits) }, undefined, 'bf16')
      .find((r) => r.name === 'generate.step_logits')!;
    const flipped = check([2, 0, 0.6, 0.4, 9, -9]);
    expect(flipped).toMatchObject({ ok: true, note: '2 of 3 steps (the later ones follow another token)' });
    expect(flipped.diff).toBeCloseTo(0.2, 6);
    expect(check([2, 0, 1.6, 0.4, 0, 2])).toMatchObject({ ok: false, note: '2 of 3 steps (the later ones follow another token)' });
  });

  it('readFixtureCase resolves the model folder and the input tensors', () => {
    const fixture = readFixtureCase(caseDir('b_batch2_rightpad'));
    expect(fixture.modelDir).toBe(join(ROOT, 'models', 'tiny-tied'));
    expect(fixture.maxNewTokens).toBe(8);
    const grid: HostTensor = fixture.inputs.get('image_grid_thw')!;
    expect(Array.from(grid.data as BigInt64Array, Number)).toEqual([1, 8, 4, 1, 6, 10]);
  });

  it('readFixtureCase names the missing case.json', () => {
    expect(() => readFixtureCase(join(ROOT, 'models'))).toThrow(`${join(ROOT, 'models', 'case.json')}: not found`);
  });
});
