// Qwen3-VL configurations (config.json layout of the released checkpoints) for random-weight models:
// the real 2B/4B/8B shapes for benchmarks, and a tiny one for tests and the CPU demo. All use the real
// tokenizer's vocabulary and special-token ids.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFolderAtomic } from '../atomic.js';
import { native } from './native.js';
import { bundledTokenizerDir, writeTokenizerFiles } from '../processor/tokenizer.js';

export const CONFIG_NAMES = ['tiny', '2b', '4b', '8b'] as const;
export type ConfigName = (typeof CONFIG_NAMES)[number];

interface Shape {
  text: { hidden: number; layers: number; heads: number; kvHeads: number; headDim: number; intermediate: number; mrope: [number, number, number]; tie: boolean };
  vision: { depth: number; hidden: number; heads: number; intermediate: number; deepstack: number[] };
}

const SHAPES: Record<ConfigName, Shape> = {
  tiny: {
    text: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 128, mrope: [4, 2, 2], tie: true },
    vision: { depth: 2, hidden: 64, heads: 4, intermediate: 128, deepstack: [0] },
  },
  '2b': {
    text: { hidden: 2048, layers: 28, heads: 16, kvHeads: 8, headDim: 128, intermediate: 6144, mrope: [24, 20, 20], tie: true },
    vision: { depth: 24, hidden: 1024, heads: 16, intermediate: 4096, deepstack: [5, 11, 17] },
  },
  '4b': {
    text: { hidden: 2560, layers: 36, heads: 32, kvHeads: 8, headDim: 128, intermediate: 9728, mrope: [24, 20, 20], tie: true },
    vision: { depth: 24, hidden: 1024, heads: 16, intermediate: 4096, deepstack: [5, 11, 17] },
  },
  '8b': {
    text: { hidden: 4096, layers: 36, heads: 32, kvHeads: 8, headDim: 128, intermediate: 12288, mrope: [24, 20, 20], tie: false },
    vision: { depth: 27, hidden: 1152, heads: 16, intermediate: 4304, deepstack: [8, 16, 24] },
  },
};

const VOCAB = 151936;

export function modelConfig(name: ConfigName): Record<string, unknown> {
  const { text, vision } = SHAPES[name];
  return {
    architectures: ['Qwen3VLForConditionalGeneration'],
    model_type: 'qwen3_vl',
    image_token_id: 151655,
    video_token_id: 151656,
    vision_start_token_id: 151652,
    vision_end_token_id: 151653,
    tie_word_embeddings: text.tie,
    dtype: 'bfloat16',
    text_config: {
      model_type: 'qwen3_vl_text',
      vocab_size: VOCAB,
      hidden_size: text.hidden,
      intermediate_size: text.intermediate,
      num_hidden_layers: text.layers,
      num_attention_heads: text.heads,
      num_key_value_heads: text.kvHeads,
      head_dim: text.headDim,
      hidden_act: 'silu',
      rms_norm_eps: 1e-6,
      attention_bias: false,
      attention_dropout: 0.0,
      max_position_embeddings: 262144,
      rope_theta: 5000000,
      rope_scaling: { rope_type: 'default', mrope_section: text.mrope, mrope_interleaved: true },
      bos_token_id: 151643,
      eos_token_id: 151645,
      tie_word_embeddings: text.tie,
      initializer_range: 0.02,
      use_cache: true,
      dtype: 'bfloat16',
    },
    vision_config: {
      model_type: 'qwen3_vl',
      depth: vision.depth,
      hidden_size: vision.hidden,
      intermediate_size: vision.intermediate,
      num_heads: vision.heads,
      hidden_act: 'gelu_pytorch_tanh',
      in_channels: 3,
      patch_size: 16,
      temporal_patch_size: 2,
      spatial_merge_size: 2,
      out_hidden_size: text.hidden,
      num_position_embeddings: 2304,
      deepstack_visual_indexes: vision.deepstack,
      initializer_range: 0.02,
    },
  };
}

/** generation_config.json and preprocessor_config.json as the Qwen3-VL Instruct checkpoints ship them. */
const GENERATION_CONFIG = {
  bos_token_id: 151643, pad_token_id: 151643, do_sample: true, eos_token_id: [151645, 151643], top_k: 20, top_p: 0.8,
  temperature: 0.7, repetition_penalty: 1.0,
};
const PREPROCESSOR_CONFIG = {
  size: { shortest_edge: 65536, longest_edge: 16777216 }, patch_size: 16, temporal_patch_size: 2, merge_size: 2,
  image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], rescale_factor: 1 / 255, do_rescale: true, do_normalize: true,
  do_resize: true, do_convert_rgb: true, resample: 3, image_processor_type: 'Qwen2VLImageProcessorFast', processor_class: 'Qwen3VLProcessor',
};

export interface InitRandomOptions {
  dtype?: 'fp32' | 'bf16';
  device?: string;
  seed?: number;
}

/** Writes a Qwen3-VL checkpoint folder with random weights, the real tokenizer and the processor files. */
export async function initRandomModel(name: ConfigName, dir: string, options: InitRandomOptions = {}): Promise<void> {
  if (!(CONFIG_NAMES as readonly string[]).includes(name)) throw new Error(`unknown config '${name}' (use ${CONFIG_NAMES.join(', ')})`);
  bundledTokenizerDir();  // no tokenizer files: say so before minutes of random weights
  // One folder, written whole or not at all: a failure (a bad device, no tokenizer files) leaves no partial model.
  await writeFolderAtomic(dir, async (temp) => {
    await native().initRandom(JSON.stringify(modelConfig(name)), temp, { dtype: options.dtype, device: options.device, seed: options.seed });
    writeFileSync(join(temp, 'generation_config.json'), `${JSON.stringify(GENERATION_CONFIG, null, 2)}\n`);
    writeFileSync(join(temp, 'preprocessor_config.json'), `${JSON.stringify(PREPROCESSOR_CONFIG, null, 2)}\n`);
    writeTokenizerFiles(temp);
  });
}
