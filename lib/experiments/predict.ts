// Batched grounding of dataset samples, then scoring: the Grounder's batch path (the one inference path of ground(),
// `pigg serve` and `pigg eval`), with PIGG's scoring of each answer against the sample's target.
import type { Sample } from '../data/types.js';
import { scoreRecord, type EvalRecord } from '../data/records.js';
import type { Qwen3VL } from '../engine/model.js';
import type { QwenTokenizer } from '../processor/tokenizer.js';
import type { ImageProcessor } from '../processor/image-pool.js';
import { QWEN3_VL_PIXELS } from '../processor/image.js';
import { generationConfigSampling, type SamplingOptions } from '../engine/sampling.js';
import { Grounder, type ConstrainOption } from '../grounding/grounder.js';
import type { PromptSettings } from '../processor/inputs.js';

export interface PredictOptions {
  settings: PromptSettings;
  batchSize?: number;
  maxNewTokens?: number;
  /** Constrained decoding (see GrounderSettings.constrain); default 'none', so PIGG's numbers reproduce. */
  constrain?: ConstrainOption;
  signal?: AbortSignal;
  /** Where images are processed (an ImagePool's process); default this thread. The next batch is always made ahead. */
  images?: ImageProcessor;
  /** Called after each batch with the number of samples done. */
  onProgress?: (done: number, total: number) => void;
}

/** The sampling an evaluation decodes with (null: greedy); 'generation-config' reads the model folder's file. */
export function evalSampling(settings: PromptSettings, modelDir: string): SamplingOptions | null {
  const { decoding = 'greedy', seed = 0 } = settings;
  if (decoding === 'greedy') return null;
  if (decoding === 'generation-config') return generationConfigSampling(modelDir, seed);
  return { ...decoding, seed: decoding.seed ?? seed };
}

export async function predict(model: Qwen3VL, tokenizer: QwenTokenizer, samples: readonly Sample[], datasetDir: string,
  options: PredictOptions): Promise<EvalRecord[]> {
  const { batchSize = 1, maxNewTokens, settings } = options;
  // The model's own EOS ids; the settings' parser and decoding (sample i of this call seeded with seed + i), by
  // default the Grounder's (robust, greedy). The settings' image options are taken as processImage takes them (a
  // limit left out is Qwen's default, not the Grounder's PIGG one).
  const grounder = await Grounder.fromModel(model, tokenizer, {
    style: settings.style, constrain: options.constrain ?? 'none', parser: settings.parser, image: { ...QWEN3_VL_PIXELS, ...settings.image },
    maxNewTokens, maxBatch: batchSize, images: options.images, sampling: evalSampling(settings, (await model.info()).path),
  });
  try {
    const results = await grounder.groundSamples(samples, datasetDir, { batchSize, signal: options.signal, onProgress: options.onProgress });
    return results.map((result, i) => scoreRecord(samples[i]!, result));
  } finally {
    await grounder[Symbol.asyncDispose]();
  }
}
