// Trainer: fine-tuning with the Hugging Face Trainer's semantics, run by the native engine. One step() is one
// optimizer step over its micro-batches (each loss divided by their count, as transformers' gradient
// accumulation does for Qwen3-VL).
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
  lora?: { rank?: number; alpha?: number; dropout?: number; targets?: string[]; loraOnly?: boolean };
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
  constructor(private readonly handle: NativeTrainer, private readonly onStep?: (report: StepReport) => void) {}

  /** One optimizer step over a micro-batch or a list of them. An aborted signal cancels the trainer for good. */
  async step(batch: NamedTensors | NamedTensors[], options: { signal?: AbortSignal } = {}): Promise<StepReport> {
    const { signal } = options;
    signal?.throwIfAborted();
    const cancel = () => this.handle.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const report = JSON.parse(await this.handle.step(Array.isArray(batch) ? batch : [batch])) as StepReport;
      this.onStep?.(report);
      return report;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  }

  /** Gradients of the named parameters for one batch, without an update (checks against references). */
  gradients(batch: NamedTensors, names: string[]): Promise<NamedTensors> {
    return this.handle.gradients(batch, names);
  }

  /** A folder transformers can load, or with LoRA a PEFT adapter folder (mergeAdapter: a merged checkpoint). */
  save(dir: string, options: { mergeAdapter?: boolean } = {}): Promise<void> {
    return this.handle.save(dir, options.mergeAdapter ?? false);
  }

  /** Weights or adapter, optimizer moments, master weights, step and RNG: everything to resume. */
  saveState(dir: string): Promise<void> {
    return this.handle.saveState(dir);
  }

  /** Resumes from saveState's folder (the trainer must have the same setup). */
  loadState(dir: string): Promise<void> {
    return this.handle.loadState(dir);
  }

  async info(): Promise<TrainerInfo> {
    return JSON.parse(await this.handle.info()) as TrainerInfo;
  }
}
