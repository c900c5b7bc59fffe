// The fine-tuning loop shared by the global and personalized runs (lib/experiments/train.ts) and the Personalizer:
// the plan of optimizer steps, the trainer's options from a TrainConfig, and the loop that steps through the plan
// while the next step's micro-batches are being made.
import { PythonRandom } from '../data/folds.js';
import type { NamedTensors } from '../engine/model.js';
import type { StepReport, Trainer, TrainerOptions } from '../engine/trainer.js';
import { prefetched } from '../util/prefetch.js';
import type { TrainConfig } from './presets.js';

/** One optimizer step: its epoch and its micro-batches (sample indices), whose gradients it accumulates. */
export interface PlannedStep {
  epoch: number;
  microBatches: number[][];
}

/** The optimizer steps of a run: per epoch a seeded shuffle, cut into micro-batches and accumulation groups. */
export function planSteps(count: number, config: Pick<TrainConfig, 'epochs' | 'batchSize' | 'gradientAccumulation' | 'seed'>): PlannedStep[] {
  const steps: PlannedStep[] = [];
  for (let epoch = 0; epoch < config.epochs; epoch++) {
    const order = new PythonRandom(config.seed + epoch).shuffle(Array.from({ length: count }, (_, i) => i));
    const micro: number[][] = [];
    for (let i = 0; i < order.length; i += config.batchSize) micro.push(order.slice(i, i + config.batchSize));
    for (let i = 0; i < micro.length; i += config.gradientAccumulation) steps.push({ epoch, microBatches: micro.slice(i, i + config.gradientAccumulation) });
  }
  return steps;
}

/** The trainer's options for a run of totalSteps steps; lora is the run's own (the Personalizer's trains aside). */
export function trainerOptions(config: TrainConfig, totalSteps: number, lora: TrainerOptions['lora'] = config.lora): TrainerOptions {
  return {
    learningRate: config.learningRate,
    weightDecay: config.weightDecay,
    maxGradNorm: config.maxGradNorm,
    warmupSteps: config.warmupSteps,
    totalSteps,
    schedule: config.schedule,
    updateMode: config.updateMode,
    gradientCheckpointing: config.gradientCheckpointing,
    seed: config.seed,
    lora,
    trainable: config.trainable,
  };
}

export interface RunStepsOptions {
  /** The plan's steps already taken (a run resumed from its trainer state); default 0. */
  from?: number;
  signal?: AbortSignal;
  /** After each step, awaited before the next one is taken. */
  onStep?: (report: StepReport, step: PlannedStep) => Promise<void> | void;
}

/** Takes the plan's steps from `from` on; while one step runs, the next step's micro-batches are made. */
export async function runSteps(trainer: Trainer, plan: readonly PlannedStep[], makeBatch: (sampleIndices: number[]) => Promise<NamedTensors>,
  options: RunStepsOptions = {}): Promise<void> {
  const { from = 0 } = options;
  const inputs = prefetched(plan.length - from, (offset) => Promise.all(plan[from + offset]!.microBatches.map((micro) => makeBatch(micro))));
  let index = from;
  for await (const batches of inputs) {
    // Requests that arrived while the last step ran get the model first (the Personalizer trains beside serving).
    await new Promise((resolve) => setImmediate(resolve));
    const report = await trainer.step(batches, { signal: options.signal });
    await options.onStep?.(report, plan[index++]!);
  }
}
