// Model inputs for one or more grounding samples: chat messages → template → tokens with expanded image pads →
// labels → a padded batch.
//
// ModelInputs (what crosses into the native engine; all arrays flat and row-major):
//   shape          [B, L]
//   inputIds       Int32Array [B*L]   token ids; padding = tokenizer.padId (`<|endoftext|>`)
//   attentionMask  Int32Array [B*L]   1 = real token, 0 = padding
//   labels         Int32Array [B*L] | null   aligned with inputIds (not shifted), -100 = not trained; null for
//                                     generation prompts
//   pixelValues    Float32Array [pixelShape[0] * 1536]   all images concatenated in order of appearance (sample 0
//                                     first); rows in the layout of spec §3.1
//   pixelShape     [numPatches, 1536]  numPatches = Σ t*h*w (0 for text-only batches)
//   imageGridThw   [t, h, w] per image, same order
//   sampleIds      id of each row
// Training batches are RIGHT padded, generation batches LEFT padded (the prompt ends at the last column).
import type { HostTensor } from '../safetensors.js';
import { tensorF32, tensorI64 } from '../safetensors.js';
import { PATCH_DIM, type ProcessedImage } from './image.js';
import type { ChatContentPart, ChatMessage, QwenTokenizer } from './tokenizer.js';

export const IGNORE_INDEX = -100;

/**
 * 'qwen': answer + `<|im_end|>` + "\n" are labelled (official Qwen3-VL fine-tuning, spec §7.3).
 * 'pigg': answer tokens only, as PIGG's collator (stops before `<|im_end|>`).
 * 'generate': prompt ending with `<|im_start|>assistant\n`, no answer, no labels.
 */
export type SampleMode = LabelConvention | 'generate';
/** Which answer tokens a training sample labels: the two training modes of SampleMode. */
export type LabelConvention = 'qwen' | 'pigg';

export interface SampleSpec {
  id: string;
  /** Images of the user turn, placed before the prompt text in this order. */
  images: ProcessedImage[];
  prompt: string;
  system?: string;
  /** The assistant answer; required unless the mode is 'generate'. */
  answer?: string;
}

export interface EncodeOptions {
  mode: SampleMode;
  /** Longest allowed sequence (image pads included); a longer sample is an error, never truncated. */
  maxLength?: number;
}

export interface EncodedSample {
  id: string;
  inputIds: Int32Array;
  labels: Int32Array | null;
  images: ProcessedImage[];
}

export interface ModelInputs {
  shape: [number, number];
  inputIds: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array | null;
  pixelValues: Float32Array;
  pixelShape: [number, number];
  imageGridThw: [number, number, number][];
  sampleIds: string[];
}

export type Padding = 'left' | 'right';

/** The chat of one sample: optional system, one user turn (images, then text), the answer when given. */
export function sampleMessages(sample: SampleSpec, withAnswer: boolean): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (sample.system !== undefined) messages.push({ role: 'system', content: sample.system });
  const content: ChatContentPart[] = sample.images.map(() => ({ type: 'image' }));
  content.push({ type: 'text', text: sample.prompt });
  messages.push({ role: 'user', content });
  if (withAnswer) {
    if (sample.answer === undefined) throw new Error(`sample ${sample.id}: training needs an answer`);
    messages.push({ role: 'assistant', content: sample.answer });
  }
  return messages;
}

function startsWith(ids: number[], prefix: number[]): boolean {
  if (prefix.length > ids.length) return false;
  for (let i = 0; i < prefix.length; i++) if (ids[i] !== prefix[i]) return false;
  return true;
}

/**
 * Replaces the k-th `<|image_pad|>` id by images[k].numImageTokens copies. Identical to HF's string-level
 * replacement before tokenizing, because `<|image_pad|>` is a special added token that never merges with neighbours.
 */
function expandImagePads(id: string, ids: number[], images: ProcessedImage[], imagePadId: number): number[] {
  const pads = ids.reduce((n, t) => n + (t === imagePadId ? 1 : 0), 0);
  if (pads !== images.length) throw new Error(`sample ${id}: the prompt holds ${pads} <|image_pad|> tokens for ${images.length} images`);
  const out: number[] = [];
  let k = 0;
  for (const t of ids) {
    if (t !== imagePadId) {
      out.push(t);
      continue;
    }
    for (let i = 0; i < images[k].numImageTokens; i++) out.push(imagePadId);
    k++;
  }
  return out;
}

/** Tokenizes one sample and builds its labels from the message boundaries of the rendered template. */
export function encodeSample(tokenizer: QwenTokenizer, sample: SampleSpec, options: EncodeOptions): EncodedSample {
  const promptText = tokenizer.applyChatTemplate(sampleMessages(sample, false), { addGenerationPrompt: true });
  const promptIds = tokenizer.encode(promptText);
  let ids = promptIds;
  let labelRange: [number, number] | null = null;
  if (options.mode !== 'generate') {
    const fullText = tokenizer.applyChatTemplate(sampleMessages(sample, true), { addGenerationPrompt: false });
    const answer = sample.answer as string;
    if (!fullText.startsWith(promptText + answer)) {
      throw new Error(`sample ${sample.id}: the chat template does not render the answer right after the generation prompt`);
    }
    ids = tokenizer.encode(fullText);
    // The answer must start and (in 'pigg' mode) end on token boundaries of the full tokenization.
    const answerIds = options.mode === 'pigg' ? tokenizer.encode(promptText + answer) : promptIds;
    if (!startsWith(ids, promptIds) || !startsWith(ids, answerIds)) {
      throw new Error(`sample ${sample.id}: the answer does not start or end on a token boundary`);
    }
    // 'qwen' trains everything after the prompt (answer, <|im_end|>, "\n"); 'pigg' only the answer.
    labelRange = [promptIds.length, options.mode === 'pigg' ? answerIds.length : ids.length];
  }

  // Label positions move by the image pads inserted before them (all images are in the user turn).
  const expanded = expandImagePads(sample.id, ids, sample.images, tokenizer.imagePadId);
  if (options.maxLength !== undefined && expanded.length > options.maxLength) {
    throw new Error(`sample ${sample.id}: ${expanded.length} tokens exceed the maximum length ${options.maxLength}`);
  }
  const inputIds = Int32Array.from(expanded);
  let labels: Int32Array | null = null;
  if (labelRange) {
    const shift = expanded.length - ids.length;
    labels = new Int32Array(inputIds.length).fill(IGNORE_INDEX);
    for (let i = labelRange[0] + shift; i < labelRange[1] + shift; i++) labels[i] = inputIds[i];
  }
  return { id: sample.id, inputIds, labels, images: sample.images };
}

/** Pads encoded samples into one batch; labels are kept only if every sample has them. */
export function collate(samples: EncodedSample[], padding: Padding, padId: number): ModelInputs {
  if (samples.length === 0) throw new Error('cannot build a batch of 0 samples');
  const batch = samples.length;
  const length = Math.max(...samples.map((s) => s.inputIds.length));
  const withLabels = samples.every((s) => s.labels !== null);
  if (!withLabels && samples.some((s) => s.labels !== null)) throw new Error('cannot mix samples with and without labels in one batch');
  const inputIds = new Int32Array(batch * length).fill(padId);
  const attentionMask = new Int32Array(batch * length);
  const labels = withLabels ? new Int32Array(batch * length).fill(IGNORE_INDEX) : null;
  samples.forEach((s, b) => {
    const offset = b * length + (padding === 'left' ? length - s.inputIds.length : 0);
    inputIds.set(s.inputIds, offset);
    attentionMask.fill(1, offset, offset + s.inputIds.length);
    if (labels) labels.set(s.labels as Int32Array, offset);
  });

  const images = samples.flatMap((s) => s.images);
  const rows = images.reduce((n, image) => n + image.pixelValues.length / PATCH_DIM, 0);
  const pixelValues = new Float32Array(rows * PATCH_DIM);
  let at = 0;
  for (const image of images) {
    pixelValues.set(image.pixelValues, at);
    at += image.pixelValues.length;
  }
  return {
    shape: [batch, length],
    inputIds,
    attentionMask,
    labels,
    pixelValues,
    pixelShape: [rows, PATCH_DIM],
    imageGridThw: images.map((image) => [...image.gridThw]),
    sampleIds: samples.map((s) => s.id),
  };
}

/** Encodes and pads a batch: right padding for the training modes, left padding for 'generate'. */
export function buildBatch(tokenizer: QwenTokenizer, samples: SampleSpec[], options: EncodeOptions): ModelInputs {
  const encoded = samples.map((sample) => encodeSample(tokenizer, sample, options));
  return collate(encoded, options.mode === 'generate' ? 'left' : 'right', tokenizer.padId);
}

/** The batch as safetensors tensors with HF names and dtypes (I64 ids/masks/labels, F32 pixels). */
export function toHostTensors(inputs: ModelInputs): Record<string, HostTensor> {
  const tensors: Record<string, HostTensor> = {
    input_ids: tensorI64(inputs.shape, inputs.inputIds),
    attention_mask: tensorI64(inputs.shape, inputs.attentionMask),
  };
  if (inputs.labels) tensors.labels = tensorI64(inputs.shape, inputs.labels);
  if (inputs.imageGridThw.length > 0) {
    tensors.pixel_values = tensorF32(inputs.pixelShape, inputs.pixelValues);
    tensors.image_grid_thw = tensorI64([inputs.imageGridThw.length, 3], inputs.imageGridThw.flat());
  }
  return tensors;
}
