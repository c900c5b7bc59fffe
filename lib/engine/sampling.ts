// Sampling settings of one generate row, as transformers' generate() applies them (repetition penalty, then
// temperature, top-k and top-p; native/picker.cpp), and the ones a checkpoint's generation_config.json asks for.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { engineDefaults, type SamplingOptions } from './native.js';

export type { SamplingOptions } from './native.js';

/** The options with every default filled in, after checking them (a message naming the bad field otherwise). */
export function checkSampling(options: SamplingOptions): Required<SamplingOptions> {
  const defaults = engineDefaults().sampling;
  const { temperature, topP = defaults.topP, topK = defaults.topK, repetitionPenalty = defaults.repetitionPenalty, seed = defaults.seed } = options;
  const fail = (field: string, rule: string, value: unknown) => {
    throw new Error(`sampling ${field} must be ${rule}, got ${String(value)}`);
  };
  if (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature)) fail('temperature', 'a number >= 0', temperature);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) fail('topP', 'in (0, 1]', topP);
  if (!Number.isInteger(topK) || topK < 0) fail('topK', 'an integer >= 0', topK);
  if (typeof repetitionPenalty !== 'number' || !(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) fail('repetitionPenalty', 'a number > 0', repetitionPenalty);
  if (!Number.isSafeInteger(seed) || seed < 0) fail('seed', 'an integer >= 0', seed);
  return { temperature, topP, topK, repetitionPenalty, seed };
}

/**
 * The decoding a checkpoint's generation_config.json asks for, with transformers' GenerationConfig defaults for what
 * it leaves out (temperature 1, top_k 50, top_p 1, repetition_penalty 1): null (greedy) unless do_sample is true.
 * The Qwen3-VL Instruct checkpoints ship do_sample with temperature 0.7, top_p 0.8, top_k 20.
 */
export function generationConfigSampling(modelDir: string, seed?: number): SamplingOptions | null {
  const file = join(modelDir, 'generation_config.json');
  if (!existsSync(file)) return null;
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (config.do_sample !== true) return null;
  const number = (key: string, fallback: number) => {
    const value = config[key] ?? fallback;
    if (typeof value !== 'number') throw new Error(`${file}: ${key} must be a number, got ${JSON.stringify(value)}`);
    return value;
  };
  const options = {
    temperature: number('temperature', 1), topP: number('top_p', 1), topK: number('top_k', 50), repetitionPenalty: number('repetition_penalty', 1), seed,
  };
  try {
    return checkSampling(options);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`);
  }
}
