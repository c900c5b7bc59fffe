// From canonical samples to model inputs: image preprocessing, PIGG's prompt and answer, batching.
import { join } from 'node:path';
import type { Sample } from '../data/types.js';
import { buildInstructionPrompt, formatAnswer, type AnswerStyle, type ParserName } from '../data/parse.js';
import { pointToGrid } from '../data/metrics.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { processImage, PIGG_EFFECTIVE_PIXELS, type ImageProcessorOptions } from './image.js';
import type { ImageProcessor } from './image-pool.js';
import { buildBatch, toHostTensors, type SampleMode, type SampleSpec } from './sample.js';
import type { QwenTokenizer } from './tokenizer.js';
import type { NamedTensors } from '../engine/model.js';

/**
 * How evaluation decodes: 'generation-config' samples as the checkpoint's generation_config.json says (greedy when it
 * has no do_sample), as PIGG's generate() did; 'greedy'; or explicit sampling settings.
 */
export type Decoding = 'greedy' | 'generation-config' | SamplingOptions;
export const DECODINGS = ['generation-config', 'greedy'] as const;

export interface PromptSettings {
  style: AnswerStyle;
  /** Pixel limits and resampler of the screenshots (training and evaluation). */
  image: ImageProcessorOptions;
  /** Evaluation: how answers are read; left out, 'robust' (PIGG_EXACT, the runs' default settings, says 'pigg'). */
  parser?: ParserName;
  /** Evaluation: left out, 'greedy' (PIGG_EXACT says 'generation-config'). */
  decoding?: Decoding;
  /** Evaluation: seed of sampled decoding; the i-th sample of a run is seeded with seed + i (default 0). */
  seed?: number;
}

/**
 * What PIGG's runs did (transformers 4.57.6): its prompt and answer, the pixel limits its processor applied (not the
 * 1280*28*28 it asked for), the fast processor's torchvision resize, its parser, and sampling from the checkpoint's
 * generation_config.json. The default settings of runEval, runTrainGlobal, runPersonalize and visualizeModel, and of
 * their commands. Settings that leave parser and decoding out keep pigg's own (robust parser, greedy), as the
 * Grounder does.
 */
export const PIGG_EXACT: PromptSettings = {
  style: 'pigg', image: { ...PIGG_EFFECTIVE_PIXELS, resampler: 'torchvision' }, parser: 'pigg', decoding: 'generation-config', seed: 0,
};
export const DEFAULT_PROMPT: PromptSettings = PIGG_EXACT;

/** One sample as the chat the model sees: its screenshot, the instruction prompt and (for training) the gold answer. */
export async function sampleSpec(sample: Sample, datasetDir: string, settings: PromptSettings, withAnswer: boolean,
  images: ImageProcessor = processImage): Promise<SampleSpec> {
  const image = await images(join(datasetDir, sample.image), settings.image).catch((error: Error) => {
    throw new Error(`sample ${sample.id}: ${error.message}`);
  });
  const spec: SampleSpec = { id: sample.id, images: [image], prompt: buildInstructionPrompt(sample.instruction, settings.style) };
  if (withAnswer) spec.answer = formatAnswer(pointToGrid(sample.target, sample.width, sample.height), sample.referring, settings.style);
  return spec;
}

export async function modelBatch(tokenizer: QwenTokenizer, samples: Sample[], datasetDir: string, settings: PromptSettings,
  mode: SampleMode, images: ImageProcessor = processImage): Promise<NamedTensors> {
  const specs = await Promise.all(samples.map((sample) => sampleSpec(sample, datasetDir, settings, mode !== 'generate', images)));
  return toHostTensors(buildBatch(tokenizer, specs, { mode }));
}
