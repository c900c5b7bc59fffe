// Batched greedy grounding: screenshots and instructions in, parsed and scored points out.
import type { Sample } from '../data/types.js';
import { pointToGrid, scoreGrid } from '../data/metrics.js';
import { parseAnswer } from '../data/parse.js';
import type { Qwen3VL } from '../engine/model.js';
import type { QwenTokenizer } from '../processor/tokenizer.js';
import type { ImageProcessor } from '../processor/image-pool.js';
import { modelBatch, prefetched, type PromptSettings } from './inputs.js';
import type { EvalRecord } from './results.js';

export interface PredictOptions {
  settings: PromptSettings;
  batchSize?: number;
  maxNewTokens?: number;
  signal?: AbortSignal;
  /** Where images are processed (an ImagePool's process); default this thread. The next batch is always made ahead. */
  images?: ImageProcessor;
  /** Called after each batch with the number of samples done. */
  onProgress?: (done: number, total: number) => void;
}

export async function predict(model: Qwen3VL, tokenizer: QwenTokenizer, samples: readonly Sample[], datasetDir: string,
  options: PredictOptions): Promise<EvalRecord[]> {
  const { batchSize = 1, maxNewTokens = 512, signal, onProgress } = options;
  const records: EvalRecord[] = [];
  const batchInputs = prefetched(Math.ceil(samples.length / batchSize), async (index) => {
    const batch = samples.slice(index * batchSize, (index + 1) * batchSize);
    return { batch, inputs: await modelBatch(tokenizer, batch, datasetDir, options.settings, 'generate', options.images) };
  });
  for await (const { batch, inputs } of batchInputs) {
    signal?.throwIfAborted();
    // Greedy decoding with the model's own EOS ids (generation_config's sampling is not used).
    const { tokens } = await model.generate(inputs, { maxNewTokens });
    batch.forEach((sample, i) => {
      const output = tokenizer.decode(tokens[i], { skipSpecialTokens: true });
      const parsed = parseAnswer(output);
      const gt = pointToGrid(sample.target, sample.width, sample.height);
      const pred: [number, number] | null = parsed.ok ? [parsed.x, parsed.y] : null;
      const score = scoreGrid(parsed.ok ? { x: parsed.x, y: parsed.y } : null, gt);
      records.push({ id: sample.id, gt: [gt.x, gt.y], pred, l2: score.l2, hit: score.hit, referring: parsed.referring, output });
    });
    onProgress?.(records.length, samples.length);
  }
  return records;
}
