// Loads the native addon (build/Release/pigg.node) and types its surface: the options it takes (read field by field
// into the engine's structs; an unknown key is a TypeError naming it), the results it gives as objects, and the
// options' defaults, which are the engine's (native/options.h) and nowhere else. Everything here returns Promises
// settled from worker threads; errors arrive as JS Errors with the engine's message.
import { createRequire } from 'node:module';
import { buildCommand, PACKAGE_ROOT } from '../package.js';
import type { HostTensor } from '../safetensors.js';

export type NamedTensors = Record<string, HostTensor>;

/** One generate row's sampling (transformers' generate(): repetition penalty, then temperature, top-k, top-p). */
export interface SamplingOptions {
  /** Softmax temperature; 0 picks the most likely token (greedy). */
  temperature: number;
  /** Nucleus: keep the most likely tokens until their probability reaches topP (1: all). Left out: engineDefaults().sampling. */
  topP?: number;
  /** Keep the k most likely tokens (0: all). */
  topK?: number;
  /** transformers' RepetitionPenalty on every token of the prompt and the answer so far (1: none). */
  repetitionPenalty?: number;
  /** Seed of this row's random stream: the same seed, logits and settings give the same tokens. */
  seed?: number;
}

export interface NativeLoadOptions {
  device?: string;
  dtype?: 'fp32' | 'bf16';
  threads?: number;
  allowTf32?: boolean;
}

/** The cancellation handle of one native call (and its progress, for loading). */
export interface NativeControl {
  cancel(): void;
  progress(): number;
}

/** A compiled answer grammar held by the engine (its token masks are cached there per state). */
export type NativeGrammar = { readonly __nativeGrammar: unique symbol };

export interface NativeGrammarTables {
  states: number;
  start: number;
  transitions: Int32Array;
  accepting: Uint8Array;
  vocabSize: number;
  offsets: Int32Array;
  bytes: Uint8Array;
  special: Uint8Array;
  eosIds: number[];
}

export interface NativeGenerateOptions {
  maxNewTokens?: number;
  eosTokenIds?: number[];
  returnStepLogits?: boolean;
  adapters?: Array<string | null>;
  grammars?: Array<NativeGrammar | null>;
  rowControls?: Array<NativeControl | null>;
  /** Per row, every field filled in (lib/engine/sampling.ts checkSampling); null: greedy. */
  sampling?: Array<Required<SamplingOptions> | null>;
  onStep?: (tokens: number[]) => void;
}

/** The trainer's options; what is left out takes the engine's default (engineDefaults().trainer). */
export interface NativeTrainerOptions {
  learningRate?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Decoupled AdamW decay, applied to all weights but biases and norm weights. */
  weightDecay?: number;
  /** Clip the global gradient norm (<= 0: no clipping). */
  maxGradNorm?: number;
  warmupSteps?: number;
  /** Optimizer steps of the whole run, for the decay. */
  totalSteps?: number;
  schedule?: 'linear' | 'cosine' | 'constant';
  /** Cosine floor as a fraction of the peak learning rate. */
  minLrRatio?: number;
  gradientCheckpointing?: boolean;
  /**
   * The loss through lm_head a chunk of rows at a time, without the [supervised tokens, vocabulary] logits tensor
   * (the same loss and gradients). false computes the plain logits and cross-entropy, for comparison.
   */
  fusedHeadLoss?: boolean;
  /** Rows per chunk of the fused loss; 0: about 64 MiB of fp32 logits per chunk. */
  headLossChunkRows?: number;
  /**
   * How bf16 weights take updates: 'master' (fp32 master weights, +4 bytes/parameter), 'kahan' (bf16
   * compensation, +2 bytes/parameter), 'stochastic' (stochastic rounding, no extra memory) or 'pure'
   * (plain bf16 with bf16 moments, as PIGG ran: updates below half an ulp are lost). fp32 weights ignore it.
   */
  updateMode?: 'master' | 'kahan' | 'stochastic' | 'pure';
  seed?: number;
  trainable?: {
    vision?: boolean;
    aligner?: boolean;
    embeddings?: boolean;
    lmHead?: boolean;
    /** Train only the last N decoder layers (and the final norm); -1: all. */
    lastLayers?: number;
  };
  /** LoRA on the language model's linear layers (peft layout); the base stays frozen unless loraOnly is false. */
  lora?: {
    rank?: number; alpha?: number; dropout?: number; targets?: string[]; loraOnly?: boolean;
    /** A PEFT adapter folder to continue from (its rank, alpha and targets are used). */
    init?: string;
    /**
     * Train beside inference: the adapter is in the model's layers only during this trainer's own calls, so
     * generate between steps answers with the base weights (and per-row adapters). Needs the base frozen.
     */
    aside?: boolean;
  };
}

/** The defaults of every call's options, as the engine reports them (native/options.h). */
export interface EngineDefaults {
  load: Required<NativeLoadOptions>;
  /** eosTokenIds null: the model's own (config.json + generation_config.json). */
  generate: { maxNewTokens: number; eosTokenIds: number[] | null; returnStepLogits: boolean };
  sampling: Required<SamplingOptions>;
  /** lora: what a given `lora: {}` stands for (no LoRA without one). */
  trainer: Required<Omit<NativeTrainerOptions, 'trainable' | 'lora'>> & {
    trainable: Required<NonNullable<NativeTrainerOptions['trainable']>>;
    lora: Required<Omit<NonNullable<NativeTrainerOptions['lora']>, 'init'>> & { init: string };
  };
}

export interface StepReport {
  step: number;
  loss: number;
  learningRate: number;
  gradNorm: number;
  /** Supervised (labelled) tokens. */
  tokens: number;
  /** Attended input tokens. */
  inputTokens: number;
  microBatches: number;
  seconds: number;
  /** Gradient clipping and the AdamW update (part of seconds). */
  optimizerSeconds: number;
}

export interface TrainerInfo {
  step: number;
  trainableParameters: number;
  parameters: string[];
  learningRate: number;
}

/** A named PEFT LoRA adapter kept beside the base weights (see Qwen3VL.registerAdapter). */
export interface AdapterInfo {
  name: string;
  path: string;
  rank: number;
  alpha: number;
  /** fp32 bytes of its A and B matrices. */
  bytes: number;
  /** Whether a copy is on the model's device now (always on the CPU). */
  onDevice: boolean;
  /** ms since the epoch of the last batch that used it; 0 = never. */
  lastUsed: number;
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

/** Device memory figures (CUDA allocator; the host tensor cache where installed). */
export interface DeviceMemoryInfo {
  available: boolean;
  allocated?: number;
  reserved?: number;
  peakAllocated?: number;
  hostCache?: { live: number; cached: number; limit: number; hits: number; misses: number };
}

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
  deviceMemory: DeviceMemoryInfo;
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

export interface NativeTrainer {
  step(batches: NamedTensors[], control?: NativeControl): Promise<StepReport>;
  gradients(batch: NamedTensors, names: string[]): Promise<NamedTensors>;
  save(dir: string, mergeAdapter: boolean, control?: NativeControl): Promise<void>;
  saveState(dir: string, control?: NativeControl): Promise<void>;
  loadState(dir: string): Promise<void>;
  info(): Promise<TrainerInfo>;
  dispose(): void;
}

export interface NativeModel {
  info(): Promise<ModelInfo>;
  createTrainer(options: NativeTrainerOptions): Promise<NativeTrainer>;
  loadAdapter(dir: string): Promise<void>;
  registerAdapter(name: string, dir: string): Promise<AdapterInfo>;
  unregisterAdapter(name: string): boolean;
  adapters(): AdapterInfo[];
  setAdapterBudget(bytes: number): void;
  forward(inputs: NamedTensors, outputs: string[], control?: NativeControl): Promise<NamedTensors>;
  generate(inputs: NamedTensors, options: NativeGenerateOptions, control?: NativeControl): Promise<NamedTensors>;
  dispose(): void;
}

export interface NativeAddon {
  load(dir: string, options: NativeLoadOptions, control?: NativeControl): Promise<NativeModel>;
  createControl(): NativeControl;
  createGrammar(tables: NativeGrammarTables): NativeGrammar;
  inspect(dir: string): Promise<CheckpointSummary>;
  readTensors(path: string): Promise<NamedTensors>;
  writeTensors(path: string, tensors: NamedTensors): Promise<void>;
  initRandom(configJson: string, dir: string, options: { dtype?: 'fp32' | 'bf16'; device?: string; seed?: number }): Promise<void>;
  versions(): string;
  defaults(): EngineDefaults;
  /** The decode loop's token picker alone, on fixed logits [rows, vocab] (f32): `draws` picks per row ('tokens' [draws, rows]). */
  sampleTokens(logits: NamedTensors, sampling: Array<Required<SamplingOptions> | null>, draws: number): Promise<NamedTensors>;
}

let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    try {
      addon = load(PACKAGE_ROOT);
    } catch (error) {
      throw new Error(`the native engine is not built (${(error as Error).message.split('\n')[0]}); run \`${buildCommand()}\``);
    }
  }
  return addon;
}

let defaults: EngineDefaults | undefined;

/** The defaults of the engine's load, generate, sampling and trainer options (written once, in native/options.h). */
export function engineDefaults(): EngineDefaults {
  defaults ??= native().defaults();
  return defaults;
}
