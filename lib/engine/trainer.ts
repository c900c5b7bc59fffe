// Trainer: fine-tuning with the Hugging Face Trainer's semantics, run by the native engine. One step() is one
// optimizer step over its micro-batches (each loss divided by their count, as transformers' gradient
// accumulation does for Qwen3-VL).
import { withSignal } from './control.js';
import type { NamedTensors, NativeTrainer } from './native.js';

export interface TrainerOptions {
  learningRate?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Decoupled AdamW decay, applied to all weights but biases and norm weights. */
  weightDecay?: number;
  /** Clip the global gradient norm (<= 0: no clipping). Default 1.0. */
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
   * (default true; the same loss and gradients). false computes the plain logits and cross-entropy, for comparison.
   */
  fusedHeadLoss?: boolean;
  /** Rows per chunk of the fused loss; 0 (default): about 64 MiB of fp32 logits per chunk. */
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
  /** Called after every optimizer step. */
  onStep?: (report: StepReport) => void;
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

export class Trainer {
  constructor(private handle: NativeTrainer | null, private readonly onStep?: (report: StepReport) => void) {}

  /**
   * One optimizer step over a micro-batch or a list of them. An aborted signal stops it within one layer, applies
   * no update and leaves the trainer usable; the step rejects with the signal's reason.
   */
  async step(batch: NamedTensors | NamedTensors[], options: { signal?: AbortSignal } = {}): Promise<StepReport> {
    const handle = this.live();
    const text = await withSignal(options.signal, (control) => handle.step(Array.isArray(batch) ? batch : [batch], control));
    const report = JSON.parse(text) as StepReport;
    this.onStep?.(report);
    return report;
  }

  /** Gradients of the named parameters for one batch, without an update (checks against references). */
  gradients(batch: NamedTensors, names: string[]): Promise<NamedTensors> {
    return this.live().gradients(batch, names);
  }

  /** A folder transformers can load, or with LoRA a PEFT adapter folder (mergeAdapter: a merged checkpoint). */
  save(dir: string, options: { mergeAdapter?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const handle = this.live();
    return withSignal(options.signal, (control) => handle.save(dir, options.mergeAdapter ?? false, control));
  }

  /** Weights or adapter, optimizer moments, master weights, step and RNG: everything to resume. */
  saveState(dir: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const handle = this.live();
    return withSignal(options.signal, (control) => handle.saveState(dir, control));
  }

  /** Resumes from saveState's folder (the trainer must have the same setup). */
  loadState(dir: string): Promise<void> {
    return this.live().loadState(dir);
  }

  async info(): Promise<TrainerInfo> {
    return JSON.parse(await this.live().info()) as TrainerInfo;
  }

  /** Releases the trainer (its moments and master weights); the model stays. */
  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private live(): NativeTrainer {
    if (!this.handle) throw new Error('the trainer was disposed');
    return this.handle;
  }
}
