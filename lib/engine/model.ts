// Qwen3VL: the typed JS face of the native engine. Inputs and outputs are named tensors
// ({dtype, shape, data: TypedArray}); outputs arrive without copying from the engine's memory.
import { native, type NamedTensors, type NativeLoadOptions, type NativeModel } from './native.js';
import { Trainer, type TrainerOptions } from './trainer.js';

export type { NamedTensors } from './native.js';

export type LoadOptions = NativeLoadOptions;

export interface ModelInfo {
  path: string;
  architecture: string;
  device: string;
  dtype: 'fp32' | 'bf16';
  parameters: { vision: number; text: number; total: number };
  parameterBytes: number;
  tiedHead: boolean;
  files: string[];
  warnings: string[];
  threads: number;
  config: ModelConfigSummary;
}

export interface ModelConfigSummary {
  text: { layers: number; hidden: number; intermediate: number; heads: number; kvHeads: number; headDim: number; vocab: number; ropeTheta: number; mropeSection: number[] };
  vision: { depth: number; hidden: number; intermediate: number; heads: number; patchSize: number; temporalPatchSize: number; mergeSize: number; deepstackIndexes: number[] };
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  tieWordEmbeddings: boolean;
  eosTokenIds: number[];
  padTokenId: number;
}

export interface CheckpointSummary {
  path: string;
  architecture: string[];
  modelType: string;
  files: string[];
  tensors: number;
  dtypes: Record<string, number>;
  tiedHead: boolean;
  parameters: { vision: number; text: number; total: number };
  config: ModelConfigSummary;
  warnings: string[];
}

/** The forward outputs the engine can return (names of the fixture layout). */
export const FORWARD_OUTPUTS = [
  'position_ids', 'rope_deltas', 'rope_deltas_unpadded', 'vision_patch_embed', 'vision_pos_embed', 'vision_rotary_cos',
  'vision_rotary_sin', 'vision_blocks_out', 'image_embeds', 'deepstack_embeds', 'inputs_embeds', 'text_rotary_cos',
  'text_rotary_sin', 'decoder_layer_outputs', 'last_hidden_state', 'logits', 'loss',
] as const;
export type ForwardOutput = (typeof FORWARD_OUTPUTS)[number];

export interface GenerateOptions {
  maxNewTokens?: number;
  /** Stop ids; defaults to the model's (config.json + generation_config.json). An empty array never stops early. */
  eosTokenIds?: number[];
  returnStepLogits?: boolean;
}

export interface GenerateResult {
  /** Generated ids per row (finished rows are padded with the pad id, as transformers does). */
  tokens: number[][];
  tensors: NamedTensors;
}

export class Qwen3VL {
  private constructor(private handle: NativeModel | null) {}

  static async load(dir: string, options: LoadOptions = {}): Promise<Qwen3VL> {
    return new Qwen3VL(await native().load(dir, options));
  }

  private live(): NativeModel {
    if (!this.handle) throw new Error('the model was disposed');
    return this.handle;
  }

  async info(): Promise<ModelInfo> {
    return JSON.parse(await this.live().info()) as ModelInfo;
  }

  /** Runs the model; `outputs` names what to return (default: logits, plus loss when labels are given). */
  async forward(inputs: NamedTensors, options: { outputs?: readonly ForwardOutput[] } = {}): Promise<NamedTensors> {
    const outputs = options.outputs ?? (inputs.labels ? ['logits', 'loss'] : ['logits']);
    return this.live().forward(inputs, [...outputs]);
  }

  /** Greedy decoding of left-padded prompts (input_ids, attention_mask, pixel_values, image_grid_thw). */
  async generate(inputs: NamedTensors, options: GenerateOptions = {}): Promise<GenerateResult> {
    const tensors = await this.live().generate(inputs, options);
    const tokens = tensors['generate.tokens'];
    const [rows, steps] = tokens.shape;
    const data = tokens.data as BigInt64Array;
    return {
      tokens: Array.from({ length: rows }, (_, r) => Array.from(data.subarray(r * steps, (r + 1) * steps), Number)),
      tensors,
    };
  }

  /** Attaches a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors). */
  loadAdapter(dir: string): Promise<void> {
    return this.live().loadAdapter(dir);
  }

  /** A trainer over this model's weights (they are updated in place; LoRA adapters attach to this model). */
  async createTrainer(options: TrainerOptions = {}): Promise<Trainer> {
    const { onStep, ...native } = options;
    return new Trainer(await this.live().createTrainer(JSON.stringify(native)), onStep);
  }

  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
  }
}

/** Validates a checkpoint folder (config, safetensors headers, names and shapes) without loading its data. */
export async function inspectCheckpoint(dir: string): Promise<CheckpointSummary> {
  return JSON.parse(await native().inspect(dir)) as CheckpointSummary;
}

export function engineVersions(): { torch: string; cuda: boolean } {
  return JSON.parse(native().versions());
}
