// The Grounder's settings and per-request options: their defaults and the checks they pass (before a model loads,
// and on every request).
import { PARSERS, type AnswerStyle, type ParserName } from '../data/parse.js';
import type { LoadCallOptions } from '../engine/model.js';
import { checkSampling, type SamplingOptions } from '../engine/sampling.js';
import type { ImageProcessorOptions } from '../processor/image.js';
import type { ImageProcessor } from '../processor/image-pool.js';
import type { BatchStats } from './generate-batch.js';
import { grounderError } from './errors.js';
import type { ConstrainStyle } from './grammar.js';
import type { InputLimits } from './validate.js';

export const DEFAULT_MAX_BATCH = 8;

/** A grammar, 'auto' (the prompt style's) or 'none'. */
export type ConstrainOption = ConstrainStyle | 'auto';

export interface GrounderSettings {
  /** Prompt and answer style: PIGG's referring + grounding blocks (default) or Qwen's JSON point. */
  style?: AnswerStyle;
  /**
   * Constrained greedy decoding: 'auto' (default) = the grammar of `style`, so every answer parses; 'pigg',
   * 'qwen-json' or 'point' (a bare `(x, y)`) name a grammar; 'none' decodes freely, as PIGG does.
   */
  constrain?: ConstrainOption;
  /**
   * How answers are read: 'robust' (default; JSON points, click(), boxes to their centre, clamped to 0-1000) or
   * 'pigg', PIGG's parse_inference exactly (pigg eval's default, so PIGG's numbers reproduce).
   */
  parser?: ParserName;
  /**
   * Sampling (temperature, top-p, top-k, repetition penalty, seed) instead of greedy decoding, for every request
   * that does not bring its own; default null: greedy. A grammar, when on, still decides which tokens are allowed.
   */
  sampling?: SamplingOptions | null;
  /** Pixel limits and resampler; default PIGG's (max_pixels 1280*28*28). */
  image?: ImageProcessorOptions;
  /** Generation budget per request (default: the engine's generate default, PIGG's budget). */
  maxNewTokens?: number;
  /** Concurrent ground() calls join one generate call, up to this many rows (default 8). */
  maxBatch?: number;
  /** Where images are decoded and resized: an ImagePool's process to share one; default a pool of imageWorkers. */
  images?: ImageProcessor;
  /** Worker threads of the Grounder's own image pool when `images` is not given (default defaultImageWorkers()). */
  imageWorkers?: number;
  /** Called after every generate call, for metrics. */
  onBatch?: (stats: BatchStats) => void;
  /**
   * Device bytes of adapters kept on the device, least recently used dropped first (the engine's LRU,
   * Qwen3VL.setAdapterBudget); the others stay in host memory. Default: the engine's (no limit).
   */
  maxAdapterBytes?: number;
  /** What a request's image and instruction may be (declared pixels, SVG, instruction length): lib/grounding/validate.ts. */
  input?: InputLimits;
}

/** Engine load options (device, dtype, threads), `signal` (aborts the load) and `onProgress` (0..1 while loading). */
export interface GrounderOptions extends LoadCallOptions, GrounderSettings {}

export interface GroundOptions {
  /** The adapter (added with addAdapter) that answers for this user; default the base model. */
  user?: string | null;
  /** Aborts this request only: dropped while queued, its row stopped once running. Rejects with an AbortError. */
  signal?: AbortSignal;
  /** Generation budget of this request (default the Grounder's). */
  maxNewTokens?: number;
  /** This request's sampling (null: greedy); default the Grounder's. */
  sampling?: SamplingOptions | null;
  /**
   * Streaming: called with each new piece of the answer's text while it is decoded (held back at an incomplete
   * UTF-8 character). The pieces joined are the result's `text`, exactly; the last may come just before the result.
   */
  onText?: (delta: string) => void;
}

export interface GroundSamplesOptions {
  /** Samples per generate call (default maxBatch); batches are the consecutive chunks of `samples`. */
  batchSize?: number;
  user?: string | null;
  maxNewTokens?: number;
  /** Sampling (default the Grounder's); sample i is seeded with seed + i, so its answer does not depend on batching. */
  sampling?: SamplingOptions | null;
  signal?: AbortSignal;
  /** Called after each batch with the number of samples done. */
  onProgress?: (done: number, total: number) => void;
}

export const CONSTRAIN_OPTIONS: readonly ConstrainOption[] = ['auto', 'pigg', 'qwen-json', 'point', 'none'];

/** The grammar a Grounder decodes with: 'auto' is the style's own. */
export function resolveConstrain(constrain: ConstrainOption | undefined, style: AnswerStyle): ConstrainStyle {
  const value = constrain ?? 'auto';
  if (!CONSTRAIN_OPTIONS.includes(value)) {
    throw grounderError('INVALID_ARGUMENT', `constrain must be one of ${CONSTRAIN_OPTIONS.join(', ')}, got '${String(value)}'`);
  }
  return value === 'auto' ? style : value;
}

export function resolveParser(parser: ParserName | undefined): ParserName {
  const value = parser ?? 'robust';
  if (!PARSERS.includes(value)) throw grounderError('INVALID_ARGUMENT', `parser must be one of ${PARSERS.join(', ')}, got '${String(value)}'`);
  return value;
}

export function resolveSampling(sampling: SamplingOptions | null | undefined): Required<SamplingOptions> | null {
  if (sampling === undefined || sampling === null) return null;
  try {
    return checkSampling(sampling);
  } catch (error) {
    throw grounderError('INVALID_ARGUMENT', (error as Error).message);
  }
}

export function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw grounderError('INVALID_ARGUMENT', `${name} must be a positive integer, got ${value}`);
  return value;
}
