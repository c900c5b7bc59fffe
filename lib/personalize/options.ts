// The Personalizer's options: their defaults and the checks they pass before any file is touched.
import type { Grounder } from '../grounding/grounder.js';
import type { ImageProcessor } from '../processor/image-pool.js';
import { PRESETS, type PresetName, type TrainConfig } from '../training/presets.js';
import { timeSplit } from './evaluation.js';
import { feedbackError } from './store.js';
import type { PersonalizerEvent, TrainFrom } from './types.js';

export const DEFAULT_MIN_NEW_SAMPLES = 8;
export const DEFAULT_HOLDOUT = 0.25;
export const DEFAULT_MIN_HOLDOUT = 2;

export interface PersonalizerOptions {
  /** The feedback folder (created if missing). */
  dir: string;
  /** Serves the answers; its model also trains the candidates (aside). */
  grounder: Grounder;
  /** Train a user once this many samples came in since the user's last decision (default 8). */
  minNewSamples?: number;
  /** Share of the user's samples held out, the most recent ones (default 0.25). */
  holdout?: number;
  /** At least this many samples are held out (default 2). */
  minHoldout?: number;
  /**
   * 'base' (default): each candidate is a fresh LoRA on the Grounder's model (the global model), trained on all the
   * user's training samples, as PIGG's personal fine-tune. 'current': it continues the adapter served now (its
   * rank and alpha) on the training samples that came after that version's own.
   */
  from?: TrainFrom;
  /** The training preset (default PIGG's 'pigg-personal': lr 2e-5, 3 epochs, batch 1x4, warmup 5). */
  preset?: PresetName;
  /** Changes to the preset (learningRate, epochs, gradientAccumulation, warmupSteps, ...). */
  overrides?: Partial<Omit<TrainConfig, 'lora'>>;
  /** LoRA of a fresh candidate (default PIGG's r 8, alpha 32, dropout 0.1). */
  lora?: { rank: number; alpha: number; dropout: number };
  /** Samples per generate call when evaluating (default the Grounder's maxBatch). */
  evalBatch?: number;
  /** Train when a user reaches minNewSamples (default true); false: only train() starts jobs. */
  auto?: boolean;
  /** Where training images are decoded and resized (an ImagePool's process); default the Grounder's. */
  images?: ImageProcessor;
  /** Progress and decisions, for logs. */
  onEvent?: (event: PersonalizerEvent) => void;
}

/** The preset with the options' changes. */
export function trainConfig(options: PersonalizerOptions): TrainConfig {
  return { ...PRESETS[options.preset ?? 'pigg-personal'], ...options.overrides };
}

/** Checks the settings (before any file is touched). */
export function checkOptions(options: PersonalizerOptions): void {
  const fail = (message: string): never => {
    throw feedbackError('INVALID_ARGUMENT', 'options', message);
  };
  if (typeof options.dir !== 'string' || options.dir === '') fail('dir must be the feedback folder');
  const n = options.minNewSamples ?? DEFAULT_MIN_NEW_SAMPLES;
  const minHoldout = options.minHoldout ?? DEFAULT_MIN_HOLDOUT;
  const share = options.holdout ?? DEFAULT_HOLDOUT;
  if (!Number.isInteger(minHoldout) || minHoldout < 1) fail(`minHoldout must be an integer >= 1, got ${minHoldout}`);
  if (!(share > 0 && share < 1)) fail(`holdout must be a share in (0, 1), got ${share}`);
  if (!Number.isInteger(n) || n < 1) fail(`minNewSamples must be an integer >= 1, got ${n}`);
  if (timeSplit(n, share, minHoldout).train < 1) fail(`minNewSamples ${n} leaves no training sample after holding out ${timeSplit(n, share, minHoldout).holdout}: use at least ${minHoldout + 1}`);
  if (options.from !== undefined && options.from !== 'base' && options.from !== 'current') fail(`from must be 'base' or 'current', got '${String(options.from)}'`);
  if (options.preset !== undefined && !(options.preset in PRESETS)) fail(`preset must be one of ${Object.keys(PRESETS).join(', ')}, got '${options.preset}'`);
  const config = trainConfig(options);
  if (!(config.learningRate >= 0)) fail(`learningRate must be >= 0, got ${config.learningRate}`);
  for (const key of ['epochs', 'batchSize', 'gradientAccumulation'] as const) {
    if (!Number.isInteger(config[key]) || config[key] < 1) fail(`${key} must be an integer >= 1, got ${config[key]}`);
  }
  if (options.evalBatch !== undefined && (!Number.isInteger(options.evalBatch) || options.evalBatch < 1)) fail(`evalBatch must be an integer >= 1, got ${options.evalBatch}`);
}
