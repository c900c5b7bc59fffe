import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { processImage, type ProcessedImage } from '../lib/processor/image.js';
import { buildBatch, collate, encodeSample, IGNORE_INDEX, toHostTensors, type EncodedSample, type SampleSpec } from '../lib/processor/sample.js';
import { QwenTokenizer } from '../lib/processor/tokenizer.js';
import { readSafetensors, type HostTensor } from '../lib/safetensors.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/', import.meta.url));
const tokenizer = QwenTokenizer.bundled();

const ANSWER = '```grounding\n[512, 87]\n```';
const ANSWER_IDS = [73594, 1951, 287, 198, 58, 20, 16, 17, 11, 220, 23, 22, 921, 73594];
const PROMPT_IDS = [23879, 279, 2711, 3137]; // "Tap the search button"

let smooth: ProcessedImage; // p4: 110x150 → 96x160, grid 1x6x10, 15 image tokens
let synthetic: ProcessedImage; // p3 settings: 233x317 → 128x192, grid 1x8x12, 24 image tokens
beforeAll(async () => {
  smooth = await processImage(join(FIXTURES, 'preprocess/smooth_150x110.png'), { minPixels: 4096, maxPixels: 16777216 });
  synthetic = await processImage(join(FIXTURES, 'preprocess/synthetic_317x233.png'), { minPixels: 65536, maxPixels: 32768 });
});

function sample(id: string, images: ProcessedImage[], extra: Partial<SampleSpec> = {}): SampleSpec {
  return { id, images, prompt: 'Tap the search button', answer: ANSWER, ...extra };
}

/** Spec §7.3 reference: scan for `assistant`, label from +2 through the first <|im_end|> and the "\n" after it. */
function officialLabels(ids: Int32Array): Int32Array {
  const labels = new Int32Array(ids.length).fill(IGNORE_INDEX);
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] !== 77091) continue;
    const start = i + 2;
    let end = start;
    while (end < ids.length && ids[end] !== 151645) end++;
    for (let j = start; j <= Math.min(end + 1, ids.length - 1); j++) labels[j] = ids[j];
  }
  return labels;
}

function labelled(labels: Int32Array): number[] {
  return Array.from(labels.keys()).filter((i) => labels[i] !== IGNORE_INDEX);
}

function numbers(tensor: HostTensor | undefined): number[] {
  return Array.from(tensor!.data as ArrayLike<number | bigint>, Number);
}

describe('encodeSample', () => {
  it('tokenizes one image + instruction + answer with expanded image pads', () => {
    const encoded = encodeSample(tokenizer, sample('s1', [smooth]), { mode: 'qwen' });
    expect(smooth.numImageTokens).toBe(15);
    expect(Array.from(encoded.inputIds)).toEqual([
      151644, 872, 198, 151652, ...Array(15).fill(151655), 151653, ...PROMPT_IDS, 151645, 198, 151644, 77091, 198, ...ANSWER_IDS, 151645, 198,
    ]);
    // The same ids as HF's processor: string-level pad replacement, then tokenization of the whole text.
    const text = tokenizer
      .applyChatTemplate([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Tap the search button' }] }, { role: 'assistant', content: ANSWER }])
      .replace('<|image_pad|>', '<|image_pad|>'.repeat(15));
    expect(Array.from(encoded.inputIds)).toEqual(tokenizer.encode(text));
  });

  it("'qwen' labels the answer, <|im_end|> and the newline (positions 29..44), like the §7.3 scan", () => {
    const encoded = encodeSample(tokenizer, sample('s1', [smooth]), { mode: 'qwen' });
    expect(labelled(encoded.labels!)).toEqual(Array.from({ length: 16 }, (_, i) => 29 + i));
    expect(Array.from(encoded.labels!.subarray(29))).toEqual([...ANSWER_IDS, 151645, 198]);
    expect(Array.from(encoded.labels!)).toEqual(Array.from(officialLabels(encoded.inputIds)));
  });

  it("'pigg' labels the answer tokens only (positions 29..42), as PIGG's collator", () => {
    const encoded = encodeSample(tokenizer, sample('s1', [smooth]), { mode: 'pigg' });
    expect(labelled(encoded.labels!)).toEqual(Array.from({ length: 14 }, (_, i) => 29 + i));
    expect(Array.from(encoded.labels!.subarray(29, 43))).toEqual(ANSWER_IDS);
  });

  it('keeps the system turn unlabelled and labels from message boundaries, not by finding "assistant"', () => {
    // After <|vision_end|> the user's text "assistant" is token 77091, which fools the §7.3 scan.
    const spec = sample('s2', [smooth], { system: 'You are a helpful assistant.', prompt: 'assistant: tap search' });
    const encoded = encodeSample(tokenizer, spec, { mode: 'qwen' });
    const ids = Array.from(encoded.inputIds);
    expect(ids.slice(0, 3)).toEqual([151644, 8948, 198]);
    expect(ids.filter((t) => t === 77091)).toHaveLength(2);
    const answerStart = ids.length - ANSWER_IDS.length - 2;
    expect(labelled(encoded.labels!)).toEqual(Array.from({ length: 16 }, (_, i) => answerStart + i));
    expect(labelled(officialLabels(encoded.inputIds)).length).toBeGreaterThan(16);
  });

  it("'generate' ends with the generation prompt and has no labels", () => {
    const encoded = encodeSample(tokenizer, sample('g', [smooth], { answer: undefined }), { mode: 'generate' });
    expect(encoded.labels).toBeNull();
    expect(Array.from(encoded.inputIds.subarray(-3))).toEqual([151644, 77091, 198]);
    expect(encoded.inputIds.length).toBe(29);
  });

  it('supports several images in order and text-only samples', () => {
    const two = encodeSample(tokenizer, sample('two', [smooth, synthetic]), { mode: 'qwen' });
    const ids = Array.from(two.inputIds);
    expect(ids.slice(3, 3 + 17)).toEqual([151652, ...Array(15).fill(151655), 151653]);
    expect(ids.slice(20, 20 + 26)).toEqual([151652, ...Array(24).fill(151655), 151653]);
    const text = encodeSample(tokenizer, sample('text', []), { mode: 'pigg' });
    expect(Array.from(text.inputIds.subarray(0, 7))).toEqual([151644, 872, 198, ...PROMPT_IDS]);
  });

  it('rejects a too-long sample naming it, a missing answer, and stray image pads', () => {
    expect(() => encodeSample(tokenizer, sample('user7/ep3/step2', [smooth]), { mode: 'qwen', maxLength: 44 })).toThrow(
      'sample user7/ep3/step2: 45 tokens exceed the maximum length 44',
    );
    expect(encodeSample(tokenizer, sample('fits', [smooth]), { mode: 'qwen', maxLength: 45 }).inputIds.length).toBe(45);
    expect(() => encodeSample(tokenizer, sample('noanswer', [smooth], { answer: undefined }), { mode: 'pigg' })).toThrow('sample noanswer: training needs an answer');
    expect(() => encodeSample(tokenizer, sample('stray', [smooth], { prompt: 'see <|image_pad|>' }), { mode: 'generate' })).toThrow(
      'sample stray: the prompt holds 2 <|image_pad|> tokens for 1 images',
    );
  });
});

describe('batching', () => {
  it('right pads training batches with <|endoftext|>, mask 0 and labels -100; images concatenated in order', () => {
    const batch = buildBatch(tokenizer, [sample('long', [synthetic]), sample('short', [smooth])], { mode: 'qwen' });
    const long = encodeSample(tokenizer, sample('long', [synthetic]), { mode: 'qwen' });
    const short = encodeSample(tokenizer, sample('short', [smooth]), { mode: 'qwen' });
    const L = long.inputIds.length;
    expect(batch.shape).toEqual([2, L]);
    expect(batch.sampleIds).toEqual(['long', 'short']);
    expect(Array.from(batch.inputIds.subarray(0, L))).toEqual(Array.from(long.inputIds));
    const row1 = batch.inputIds.subarray(L);
    const n = short.inputIds.length;
    expect(Array.from(row1.subarray(0, n))).toEqual(Array.from(short.inputIds));
    expect(Array.from(row1.subarray(n))).toEqual(Array(L - n).fill(151643));
    expect(Array.from(batch.attentionMask.subarray(L))).toEqual([...Array(n).fill(1), ...Array(L - n).fill(0)]);
    expect(Array.from(batch.labels!.subarray(L + n))).toEqual(Array(L - n).fill(IGNORE_INDEX));
    expect(Array.from(batch.labels!.subarray(L, L + n))).toEqual(Array.from(short.labels!));
    expect(batch.imageGridThw).toEqual([[1, 8, 12], [1, 6, 10]]);
    expect(batch.pixelShape).toEqual([96 + 60, 1536]);
    expect(batch.pixelValues.subarray(0, synthetic.pixelValues.length)).toEqual(synthetic.pixelValues);
    expect(batch.pixelValues.subarray(synthetic.pixelValues.length)).toEqual(smooth.pixelValues);
  });

  it('left pads generation batches', () => {
    const batch = buildBatch(tokenizer, [sample('a', [smooth]), sample('b', [synthetic])], { mode: 'generate' });
    const a = encodeSample(tokenizer, sample('a', [smooth]), { mode: 'generate' });
    const b = encodeSample(tokenizer, sample('b', [synthetic]), { mode: 'generate' });
    const L = b.inputIds.length;
    const pad = L - a.inputIds.length;
    expect(batch.shape).toEqual([2, L]);
    expect(batch.labels).toBeNull();
    expect(Array.from(batch.inputIds.subarray(0, L))).toEqual([...Array(pad).fill(151643), ...a.inputIds]);
    expect(Array.from(batch.attentionMask.subarray(0, L))).toEqual([...Array(pad).fill(0), ...Array(L - pad).fill(1)]);
    expect(Array.from(batch.inputIds.subarray(L))).toEqual(Array.from(b.inputIds));
    // Every row ends with <|im_start|>assistant\n.
    expect(Array.from(batch.inputIds.subarray(L - 3, L))).toEqual([151644, 77091, 198]);
  });

  it('reproduces the padding of fixture case b (right for training, left for decoding)', () => {
    const inputs = readSafetensors(join(FIXTURES, 'cases/b_batch2_rightpad/inputs.safetensors'));
    const [B, L] = inputs.get('input_ids')!.shape;
    const [, Lp] = inputs.get('decode_input_ids')!.shape;
    const ids = numbers(inputs.get('input_ids'));
    const mask = numbers(inputs.get('attention_mask'));
    const labels = numbers(inputs.get('labels'));
    const decodeIds = numbers(inputs.get('decode_input_ids'));
    const decodeMask = numbers(inputs.get('decode_attention_mask'));
    const grids = numbers(inputs.get('image_grid_thw'));
    const pixels = inputs.get('pixel_values')!.data as Float32Array;
    const images: ProcessedImage[] = [];
    let row = 0;
    for (let i = 0; i < B; i++) {
      const gridThw: [number, number, number] = [grids[3 * i], grids[3 * i + 1], grids[3 * i + 2]];
      const rows = gridThw[0] * gridThw[1] * gridThw[2];
      images.push({ pixelValues: pixels.slice(row * 1536, (row + rows) * 1536), gridThw, numImageTokens: rows / 4, sourceSize: { width: 0, height: 0 }, resizedSize: { width: 0, height: 0 } });
      row += rows;
    }
    const train: EncodedSample[] = [];
    const decode: EncodedSample[] = [];
    for (let b = 0; b < B; b++) {
      const n = mask.slice(b * L, (b + 1) * L).reduce((s, v) => s + v, 0);
      train.push({ id: `b${b}`, inputIds: Int32Array.from(ids.slice(b * L, b * L + n)), labels: Int32Array.from(labels.slice(b * L, b * L + n)), images: [images[b]] });
      const m = decodeMask.slice(b * Lp, (b + 1) * Lp).reduce((s, v) => s + v, 0);
      decode.push({ id: `b${b}`, inputIds: Int32Array.from(decodeIds.slice((b + 1) * Lp - m, (b + 1) * Lp)), labels: null, images: [images[b]] });
    }
    const right = collate(train, 'right', 1755);
    expect(right.shape).toEqual([B, L]);
    expect(Array.from(right.inputIds)).toEqual(ids);
    expect(Array.from(right.attentionMask)).toEqual(mask);
    expect(Array.from(right.labels!)).toEqual(labels);
    expect(right.imageGridThw.flat()).toEqual(grids);
    expect(right.pixelValues).toEqual(pixels);
    const left = collate(decode, 'left', 1755);
    expect(left.shape).toEqual([B, Lp]);
    expect(Array.from(left.inputIds)).toEqual(decodeIds);
    expect(Array.from(left.attentionMask)).toEqual(decodeMask);
  });

  it('converts to safetensors tensors with HF names and dtypes', () => {
    const tensors = toHostTensors(buildBatch(tokenizer, [sample('a', [smooth])], { mode: 'pigg' }));
    expect(Object.keys(tensors).sort()).toEqual(['attention_mask', 'image_grid_thw', 'input_ids', 'labels', 'pixel_values']);
    expect(tensors.input_ids).toMatchObject({ dtype: 'I64', shape: [1, 45] });
    expect(tensors.pixel_values).toMatchObject({ dtype: 'F32', shape: [60, 1536] });
    expect(numbers(tensors.image_grid_thw)).toEqual([1, 6, 10]);
    const textOnly = toHostTensors(buildBatch(tokenizer, [sample('t', [])], { mode: 'generate' }));
    expect(Object.keys(textOnly).sort()).toEqual(['attention_mask', 'input_ids']);
  });

  it('refuses an empty batch and mixed labelled/unlabelled samples', () => {
    expect(() => collate([], 'right', 0)).toThrow('cannot build a batch of 0 samples');
    const a = encodeSample(tokenizer, sample('a', []), { mode: 'qwen' });
    const g = encodeSample(tokenizer, sample('g', []), { mode: 'generate' });
    expect(() => collate([a, g], 'right', 0)).toThrow('cannot mix samples with and without labels in one batch');
  });
});
