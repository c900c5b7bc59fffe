// `pigg visualize --model`: predict chosen samples of one user with a model, then draw them.
import { basename, join } from 'node:path';
import { Qwen3VL, type LoadOptions } from '../engine/model.js';
import { QwenTokenizer } from '../processor/tokenizer.js';
import { visualizeRecords } from '../report/visualize.js';
import { DEFAULT_PROMPT, type PromptSettings } from '../processor/inputs.js';
import { predict } from './predict.js';
import { checkModelDir, usersSamples } from './runs.js';

export interface VisualizeModelOptions {
  model: string;
  data: string;
  user: string;
  /** Indices into the user's samples (manifest order); all of them when absent. */
  samples?: number[];
  out?: string;
  settings?: PromptSettings;
  load?: LoadOptions;
  maxNewTokens?: number;
  adapter?: string;
}

export async function visualizeModel(options: VisualizeModelOptions): Promise<string[]> {
  checkModelDir(options.model);
  const samples = (await usersSamples(options.data, [options.user])).get(options.user)!;
  const chosen = (options.samples ?? samples.map((_, i) => i)).map((index) => {
    if (index >= samples.length) throw new Error(`sample index ${index} is out of range: user ${options.user} has ${samples.length} samples`);
    return samples[index];
  });
  const model = await Qwen3VL.load(options.model, options.load);
  try {
    if (options.adapter) await model.loadAdapter(options.adapter);
    const records = await predict(model, QwenTokenizer.fromDir(options.model), chosen, options.data, {
      settings: options.settings ?? DEFAULT_PROMPT, maxNewTokens: options.maxNewTokens,
    });
    const out = options.out ?? join('visualizations', basename(options.model));
    return visualizeRecords(records, new Map(chosen.map((s) => [s.id, s])), options.data, out, { source: options.model });
  } finally {
    model.dispose();
  }
}
