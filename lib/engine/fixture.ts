// Golden-fixture cases (the qwen3vl-tiny layout): run the engine from a case's inputs alone, and compare its
// outputs with the recorded ones under the fixture README's tolerances.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readSafetensors, toFloat64, type HostTensor } from '../safetensors.js';
import { engineDefaults, FORWARD_OUTPUTS, Qwen3VL, type LoadOptions, type NamedTensors } from './model.js';

export interface FixtureCase {
  dir: string;
  modelDir: string;
  maxNewTokens: number;
  gradParams: string[];
  inputs: Map<string, HostTensor>;
}

export interface FixtureRunOptions extends LoadOptions {
  /** A model folder to use instead of the case's own (e.g. the same weights stored as BF16). */
  model?: string;
  /** Compute grad.<name> with per-layer gradient checkpointing (same gradients, less memory). */
  gradientCheckpointing?: boolean;
}

export function readFixtureCase(caseDir: string): FixtureCase {
  const caseFile = join(caseDir, 'case.json');
  if (!existsSync(caseFile)) throw new Error(`${caseFile}: not found (is ${caseDir} a fixture case folder?)`);
  const meta = JSON.parse(readFileSync(caseFile, 'utf8')) as { model: string; max_new_tokens?: number; grad_params?: string[] };
  if (typeof meta.model !== 'string') throw new Error(`${caseFile}: 'model' must name the model folder`);
  return {
    dir: caseDir,
    modelDir: resolve(caseDir, meta.model),
    maxNewTokens: meta.max_new_tokens ?? 8,
    gradParams: meta.grad_params ?? [],
    inputs: readSafetensors(join(caseDir, 'inputs.safetensors')),
  };
}

function pick(inputs: Map<string, HostTensor>, names: Record<string, string>): NamedTensors {
  const out: NamedTensors = {};
  for (const [as, name] of Object.entries(names)) {
    const tensor = inputs.get(name);
    if (tensor) out[as] = tensor;
  }
  return out;
}

/**
 * Runs every forward output, the greedy generation and the gradients of the case's grad_params (vision tower
 * and mergers frozen, text trainable, one backward of the loss); returns tensors under the fixture names.
 */
export async function runFixtureCase(caseDir: string, options: FixtureRunOptions = {}): Promise<NamedTensors> {
  const fixture = readFixtureCase(caseDir);
  const { model: modelDir, gradientCheckpointing = false, ...loadOptions } = options;
  const model = await Qwen3VL.load(modelDir ?? fixture.modelDir, loadOptions);
  try {
    const images = { pixel_values: 'pixel_values', image_grid_thw: 'image_grid_thw' };
    const forward = await model.forward(
      pick(fixture.inputs, { input_ids: 'input_ids', attention_mask: 'attention_mask', labels: 'labels', ...images }),
      { outputs: FORWARD_OUTPUTS },
    );
    const generated = await model.generate(
      pick(fixture.inputs, { input_ids: 'decode_input_ids', attention_mask: 'decode_attention_mask', ...images }),
      { maxNewTokens: fixture.maxNewTokens, eosTokenIds: [], returnStepLogits: true },
    );
    // The fixture layout records what transformers returns: not pigg's per-row abort flags and timings.
    const { 'generate.aborted': _aborted, 'generate.timing': _timing, ...recorded } = generated.tensors;
    const outputs: NamedTensors = { ...forward, ...recorded };
    if (fixture.gradParams.length > 0 && fixture.inputs.has('labels')) {
      const trainer = await model.createTrainer({ gradientCheckpointing, learningRate: 0 });
      const gradients = await trainer.gradients(
        pick(fixture.inputs, { input_ids: 'input_ids', attention_mask: 'attention_mask', labels: 'labels', ...images }),
        fixture.gradParams,
      );
      for (const [name, tensor] of Object.entries(gradients)) outputs[`grad.${name}`] = tensor;
    }
    return outputs;
  } finally {
    model.dispose();
  }
}

export interface CheckRow {
  name: string;
  /** 'exact', 'abs' (max abs diff), 'rel' (max abs diff over max |expected|), or 'info' (reported, not judged). */
  kind: 'exact' | 'abs' | 'rel' | 'info';
  diff: number;
  tolerance: number;
  ok: boolean;
  note?: string;
}

const EXACT = new Set(['position_ids', 'rope_deltas', 'rope_deltas_unpadded', 'generate.fed_position_ids', 'generate.rope_deltas', 'generate.rope_deltas_unpadded', 'generate.tokens']);

function fp32Tolerance(name: string): number {
  if (name.startsWith('vision_') || name === 'image_embeds' || name.startsWith('deepstack_embeds.') || name === 'inputs_embeds') return 1e-4;
  if (name.startsWith('text_rotary_')) return 1e-5;
  if (name === 'decoder_layer_outputs' || name === 'last_hidden_state') return 5e-4;
  if (name === 'logits' || name === 'generate.step_logits') return 1e-3;
  if (name === 'loss') return 1e-5;
  return 1e-4;
}

// Index of the batch axis for tensors with [.., B, L, ..] layout, so padded positions can be skipped.
function batchAxis(name: string): number | undefined {
  if (name === 'position_ids' || name === 'decoder_layer_outputs') return 1;
  if (['inputs_embeds', 'text_rotary_cos', 'text_rotary_sin', 'last_hidden_state', 'logits'].includes(name)) return 0;
  return undefined;
}

function validPredicate(shape: number[], axis: number | undefined, mask: HostTensor | undefined): (i: number) => boolean {
  if (axis === undefined || !mask) return () => true;
  const [batch, length] = mask.shape;
  const inner = shape.slice(axis + 2).reduce((a, b) => a * b, 1);
  const maskData = toFloat64(mask);
  return (i) => {
    const row = Math.floor(i / inner);
    const l = row % length;
    const b = Math.floor(row / length) % batch;
    return maskData[b * length + l] !== 0;
  };
}

/**
 * The step logits that follow the recorded tokens: step s of a row depends on its tokens before s, so a row's
 * steps are compared up to and including its first token that differs from the recorded one (bf16 may pick
 * another token where the recorded margin is small; fp32 must match every token anyway).
 */
function comparableSteps(shape: number[], got: HostTensor | undefined, want: HostTensor | undefined): { valid: (i: number) => boolean; note?: string } {
  const [batch, steps, vocab] = shape;
  if (!got || !want || got.shape.join(',') !== want.shape.join(',')) return { valid: () => true };
  const a = toFloat64(got);
  const e = toFloat64(want);
  const counts = Array.from({ length: batch }, (_, b) => {
    let s = 0;
    while (s < steps && a[b * steps + s] === e[b * steps + s]) s++;
    return Math.min(s + 1, steps);
  });
  const compared = counts.reduce((x, y) => x + y, 0);
  return {
    valid: (i) => Math.floor(i / vocab) % steps < counts[Math.floor(i / (vocab * steps))],
    note: compared < batch * steps ? `${compared} of ${batch * steps} steps (the later ones follow another token)` : undefined,
  };
}

/** Top-1 minus top-2 of each step's logits, [B][steps]. */
function stepMargins(stepLogits: HostTensor): number[][] {
  const [batch, steps, vocab] = stepLogits.shape;
  const data = toFloat64(stepLogits);
  return Array.from({ length: batch }, (_, b) =>
    Array.from({ length: steps }, (_, s) => {
      let first = -Infinity;
      let second = -Infinity;
      for (let v = 0; v < vocab; v++) {
        const x = data[(b * steps + s) * vocab + v];
        if (x > first) [first, second] = [x, first];
        else if (x > second) second = x;
      }
      return first - second;
    }));
}

/**
 * Compares actual with expected tensors. fp32 compute uses the README's tolerances; bf16 compute judges only
 * logits/step_logits (0.5), loss (5e-2), exact integer outputs and greedy tokens up to the first step whose
 * recorded top-1/top-2 margin is below 0.5.
 */
export function compareFixture(expected: Map<string, HostTensor>, actual: NamedTensors, attentionMask: HostTensor | undefined,
  computeDtype: 'fp32' | 'bf16' = 'fp32'): CheckRow[] {
  const rows: CheckRow[] = [];
  const margins = expected.has('generate.step_logits') ? stepMargins(expected.get('generate.step_logits')!) : undefined;
  for (const [name, want] of [...expected.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const got = actual[name];
    if (!got) {
      rows.push(name.startsWith('grad.')
        ? { name, kind: 'info', diff: NaN, tolerance: NaN, ok: true, note: 'gradients not requested' }
        : { name, kind: 'exact', diff: NaN, tolerance: 0, ok: false, note: 'not produced' });
      continue;
    }
    if (got.shape.join(',') !== want.shape.join(',')) {
      rows.push({ name, kind: 'exact', diff: NaN, tolerance: 0, ok: false, note: `shape [${got.shape}] vs expected [${want.shape}]` });
      continue;
    }
    const a = toFloat64(got);
    const e = toFloat64(want);
    if (name === 'generate.tokens' && computeDtype === 'bf16' && margins) {
      const [batch, steps] = want.shape;
      let compared = 0;
      let ok = true;
      for (let b = 0; b < batch; b++) {
        for (let s = 0; s < steps && margins[b][s] >= 0.5; s++) {
          compared++;
          if (a[b * steps + s] !== e[b * steps + s]) ok = false;
        }
      }
      rows.push({ name, kind: 'exact', diff: ok ? 0 : 1, tolerance: 0, ok, note: `${compared} of ${batch * steps} tokens before a margin < 0.5` });
      continue;
    }
    const stepped = name === 'generate.step_logits' ? comparableSteps(want.shape, actual['generate.tokens'], expected.get('generate.tokens')) : undefined;
    const valid = stepped ? stepped.valid : validPredicate(want.shape, batchAxis(name), attentionMask);
    let maxDiff = 0;
    let maxExpected = 0;
    for (let i = 0; i < e.length; i++) {
      if (!valid(i)) continue;
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - e[i]));  // a NaN anywhere makes the max NaN, and the row fail
      maxExpected = Math.max(maxExpected, Math.abs(e[i]));
    }
    if (EXACT.has(name)) {
      rows.push({ name, kind: 'exact', diff: maxDiff, tolerance: 0, ok: maxDiff === 0 });
    } else if (name.startsWith('grad.') && computeDtype === 'fp32') {
      const tolerance = 1e-4 * maxExpected + 1e-6;
      rows.push({ name, kind: 'rel', diff: maxDiff, tolerance, ok: maxDiff <= tolerance });
    } else if (computeDtype === 'bf16') {
      const tolerance = name === 'loss' ? 5e-2 : name === 'logits' || name === 'generate.step_logits' ? 0.5 : NaN;
      rows.push(Number.isNaN(tolerance)
        ? { name, kind: 'info', diff: maxDiff, tolerance, ok: true }
        : { name, kind: 'abs', diff: maxDiff, tolerance, ok: maxDiff <= tolerance, ...(stepped?.note ? { note: stepped.note } : {}) });
    } else {
      const tolerance = fp32Tolerance(name);
      rows.push({ name, kind: 'abs', diff: maxDiff, tolerance, ok: maxDiff <= tolerance });
    }
  }
  return rows;
}

export async function checkFixtureCase(caseDir: string, options: FixtureRunOptions = {}): Promise<CheckRow[]> {
  const fixture = readFixtureCase(caseDir);
  const actual = await runFixtureCase(caseDir, options);
  const expected = readSafetensors(join(caseDir, 'outputs.safetensors'));
  return compareFixture(expected, actual, fixture.inputs.get('attention_mask'), options.dtype ?? engineDefaults().load.dtype);
}
