// The fused, chunked loss through lm_head (native/head_loss.*, the training default) against the plain logits +
// cross-entropy (fusedHeadLoss: false) on the tiny fixture models: the same loss, the same gradients of every
// trainable parameter, one chunk or many, tied or untied head, full fine-tune or LoRA, fp32 and bf16, and the same
// gradient-accumulation step (the loss of each micro-batch divided by their count).
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Qwen3VL, type NamedTensors } from '../lib/engine/model.js';
import type { TrainerOptions } from '../lib/engine/trainer.js';
import { readSafetensors, toFloat64 } from '../lib/safetensors.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/', import.meta.url));
const UNTIED = join(FIXTURE, 'models', 'tiny-untied');
const TIED = join(FIXTURE, 'models', 'tiny-tied');
const INPUT_NAMES = ['input_ids', 'attention_mask', 'labels', 'pixel_values', 'image_grid_thw'];

function batchOf(caseName: string): NamedTensors {
  const inputs = readSafetensors(join(FIXTURE, 'cases', caseName, 'inputs.safetensors'));
  return Object.fromEntries(INPUT_NAMES.filter((n) => inputs.has(n)).map((n) => [n, inputs.get(n)!]));
}
const A = batchOf('a_single_image'); // 8 supervised tokens
const B = batchOf('b_batch2_rightpad'); // two rows, right padding
const supervised = (batch: NamedTensors) => (batch.labels.data as BigInt64Array).filter((v) => v !== -100n).length;

const BASE: TrainerOptions = { learningRate: 0, warmupSteps: 0, maxGradNorm: 0, gradientCheckpointing: false };

async function gradientsOf(modelDir: string, dtype: 'fp32' | 'bf16', batch: NamedTensors, options: TrainerOptions) {
  const model = await Qwen3VL.load(modelDir, { device: 'cpu', dtype });
  try {
    const trainer = await model.createTrainer({ ...BASE, ...options });
    const names = (await trainer.info()).parameters;
    const grads = await trainer.gradients(batch, names);
    return Object.fromEntries(names.map((n) => [n, toFloat64(grads[n])]));
  } finally {
    model.dispose();
  }
}

/** Per parameter, max |fused - plain| / max |plain|, and the largest over all of them (a zero gradient, as
 * LoRA's A before B has moved, must stay exactly zero). */
function worstRelative(fused: Record<string, Float64Array>, plain: Record<string, Float64Array>) {
  expect(Object.keys(fused).sort()).toEqual(Object.keys(plain).sort());
  let worst = 0;
  for (const [name, reference] of Object.entries(plain)) {
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < reference.length; i++) {
      scale = Math.max(scale, Math.abs(reference[i]));
      diff = Math.max(diff, Math.abs(fused[name][i] - reference[i]));
    }
    if (scale === 0) expect(diff, `${name}: zero gradient`).toBe(0);
    else worst = Math.max(worst, diff / scale);
  }
  return worst;
}

describe('fused head loss: the same gradients as the plain logits + cross-entropy', () => {
  const cases: [string, string, NamedTensors, TrainerOptions][] = [
    ['untied head, case a', UNTIED, A, {}],
    ['untied head, case b (two rows, padding)', UNTIED, B, {}],
    ['tied head (the embedding gets both gradients), case a', TIED, A, {}],
    ['LoRA (frozen head), case a', UNTIED, A, { lora: { rank: 4, alpha: 8, dropout: 0 } }],
  ];
  for (const [label, dir, batch, options] of cases) {
    it(`fp32, ${label}: one chunk and chunks of 3 and 1 rows`, async () => {
      expect(supervised(batch)).toBeGreaterThan(3); // so that 3-row chunks leave a partial last one
      const plain = await gradientsOf(dir, 'fp32', batch, { ...options, fusedHeadLoss: false });
      for (const headLossChunkRows of [0, 3, 1]) {
        const fused = await gradientsOf(dir, 'fp32', batch, { ...options, headLossChunkRows });
        // One chunk: the same sums; more chunks add the head's gradient chunk by chunk (another fp32 order).
        expect(worstRelative(fused, plain), `chunk ${headLossChunkRows}`).toBeLessThan(headLossChunkRows === 0 ? 2e-6 : 1e-5);
      }
    });
  }

  it('bf16 (pure): within bf16 rounding of the plain path', async () => {
    const plain = await gradientsOf(UNTIED, 'bf16', A, { updateMode: 'pure', fusedHeadLoss: false });
    for (const headLossChunkRows of [0, 3]) {
      const fused = await gradientsOf(UNTIED, 'bf16', A, { updateMode: 'pure', headLossChunkRows });
      expect(worstRelative(fused, plain), `chunk ${headLossChunkRows}`).toBeLessThan(2 ** -7);
    }
  });
});

describe('fused head loss: the same training step', () => {
  // Two micro-batches of different sizes in one step: the loss and the gradient norm see each micro-batch's
  // loss divided by 2 (the backward pass's scale), as transformers' gradient accumulation does.
  async function stepOf(fusedHeadLoss: boolean, headLossChunkRows = 0) {
    const model = await Qwen3VL.load(UNTIED, { device: 'cpu', dtype: 'fp32' });
    try {
      const trainer = await model.createTrainer({ ...BASE, fusedHeadLoss, headLossChunkRows });
      const single = await trainer.step([A]);
      const onlyB = await trainer.step([B]);
      const accumulated = await trainer.step([A, B]);
      return { single, onlyB, accumulated };
    } finally {
      model.dispose();
    }
  }

  it('loss and gradient norm of one and of two accumulated micro-batches', async () => {
    const plain = await stepOf(false);
    for (const chunk of [0, 2]) {
      const fused = await stepOf(true, chunk);
      for (const key of ['single', 'accumulated'] as const) {
        expect(Math.abs(fused[key].loss - plain[key].loss) / plain[key].loss, `${key} loss, chunk ${chunk}`).toBeLessThan(1e-6);
        expect(Math.abs(fused[key].gradNorm - plain[key].gradNorm) / plain[key].gradNorm, `${key} grad norm, chunk ${chunk}`).toBeLessThan(1e-6);
        expect(fused[key].tokens).toBe(plain[key].tokens);
      }
    }
    // The accumulated step's loss is the mean of the two micro-batch losses (lr 0: the weights did not move).
    expect(plain.accumulated.tokens).toBe(supervised(A) + supervised(B));
    expect(Math.abs(plain.single.loss - plain.onlyB.loss)).toBeGreaterThan(1e-3);
    expect(plain.accumulated.loss).toBeCloseTo((plain.single.loss + plain.onlyB.loss) / 2, 5);
  });
});
