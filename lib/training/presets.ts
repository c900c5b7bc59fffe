// PIGG's training settings (its global and personal fine-tunes) as named presets, and the CPU demo's own.
import type { TrainerOptions } from '../engine/trainer.js';
import type { LabelConvention } from '../processor/sample.js';

export interface TrainConfig {
  learningRate: number;
  epochs: number;
  /** Micro-batch size (PIGG: 1). */
  batchSize: number;
  gradientAccumulation: number;
  warmupSteps: number;
  weightDecay: number;
  maxGradNorm: number;
  schedule: 'linear' | 'cosine' | 'constant';
  /** How bf16 weights take updates; 'pure' reproduces PIGG's plain-bf16 AdamW. */
  updateMode: 'master' | 'kahan' | 'stochastic' | 'pure';
  gradientCheckpointing: boolean;
  /** Which tokens are labelled: 'pigg' (answer tokens only) or 'qwen' (answer + <|im_end|> + newline). */
  labelConvention: LabelConvention;
  lora?: { rank: number; alpha: number; dropout: number };
  /** Which parts train (default: the language model, embeddings and head included; vision tower and merger frozen). */
  trainable?: TrainerOptions['trainable'];
  seed: number;
}

export const PRESETS = {
  'pigg-global': {
    learningRate: 1e-6, epochs: 1, batchSize: 1, gradientAccumulation: 8, warmupSteps: 50, weightDecay: 0.01, maxGradNorm: 1.0,
    schedule: 'linear', updateMode: 'master', gradientCheckpointing: true, labelConvention: 'pigg', seed: 42,
  },
  'pigg-personal': {
    learningRate: 2e-5, epochs: 3, batchSize: 1, gradientAccumulation: 4, warmupSteps: 5, weightDecay: 0.01, maxGradNorm: 1.0,
    schedule: 'linear', updateMode: 'master', gradientCheckpointing: true, labelConvention: 'pigg', seed: 42,
  },
  // The CPU demo's schedules (lib/experiments/demo.ts) for a tiny random model: a high learning rate, small batches
  // and enough optimizer steps for the global model to ground from the instruction and for each fold of the
  // personal fine-tune to take up the user's own layout and habits. No gradient checkpointing: the tiny model's
  // activations are small (its step time is the 151,936-token output layer's).
  'demo-global': {
    learningRate: 1e-2, epochs: 3, batchSize: 4, gradientAccumulation: 1, warmupSteps: 10, weightDecay: 0.01, maxGradNorm: 1.0,
    schedule: 'linear', updateMode: 'master', gradientCheckpointing: false, labelConvention: 'pigg', seed: 42,
  },
  'demo-personal': {
    learningRate: 1e-2, epochs: 12, batchSize: 4, gradientAccumulation: 1, warmupSteps: 5, weightDecay: 0.01, maxGradNorm: 1.0,
    schedule: 'linear', updateMode: 'master', gradientCheckpointing: false, labelConvention: 'pigg', seed: 42,
  },
} satisfies Record<string, TrainConfig>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

/** PIGG's LoRA: r 8, alpha 32, dropout 0.1 on every linear layer of the language model. */
export const PIGG_LORA = { rank: 8, alpha: 32, dropout: 0.1 };
