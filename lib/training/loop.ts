// The fine-tuning loop shared by the global and personalized runs (lib/experiments/train.ts) and the Personalizer:
// the plan of optimizer steps.
import { PythonRandom } from '../data/folds.js';
import type { TrainConfig } from './presets.js';

/** The optimizer steps of a run: per epoch a seeded shuffle, cut into micro-batches and accumulation groups. */
export function planSteps(count: number, config: Pick<TrainConfig, 'epochs' | 'batchSize' | 'gradientAccumulation' | 'seed'>): Array<{ epoch: number; microBatches: number[][] }> {
  const steps: Array<{ epoch: number; microBatches: number[][] }> = [];
  for (let epoch = 0; epoch < config.epochs; epoch++) {
    const order = new PythonRandom(config.seed + epoch).shuffle(Array.from({ length: count }, (_, i) => i));
    const micro: number[][] = [];
    for (let i = 0; i < order.length; i += config.batchSize) micro.push(order.slice(i, i + config.batchSize));
    for (let i = 0; i < micro.length; i += config.gradientAccumulation) steps.push({ epoch, microBatches: micro.slice(i, i + config.gradientAccumulation) });
  }
  return steps;
}
