// The global and the personalized fine-tuning runs over the shared loop (lib/training/loop.ts: a seeded per-epoch
// order, micro-batches grouped into optimizer steps by gradient accumulation): JSONL logs, periodic resumable state, and the final
// checkpoint (or LoRA adapter) written atomically. A run killed at any point resumes from its last state.
import { existsSync, rmSync } from 'node:fs';
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Sample } from '../data/types.js';
import { Qwen3VL, type LoadOptions } from '../engine/model.js';
import type { StepReport } from '../engine/trainer.js';
import type { QwenTokenizer } from '../processor/tokenizer.js';
import { processImage } from '../processor/image.js';
import type { ImageProcessor } from '../processor/image-pool.js';
import { cachedImages } from '../processor/image-cache.js';
import { modelBatch, type PromptSettings } from '../processor/inputs.js';
import type { TrainConfig } from '../training/presets.js';
import { planSteps, runSteps, trainerOptions } from '../training/loop.js';

export interface TrainRunOptions {
  /** Model to start from. */
  modelDir: string;
  samples: readonly Sample[];
  datasetDir: string;
  config: TrainConfig;
  settings: PromptSettings;
  load: LoadOptions;
  /** Where the final checkpoint (or adapter) goes; its presence means the run is finished. */
  outDir: string;
  /** Resumable state, saved every saveEvery optimizer steps and removed at the end. */
  stateDir: string;
  logFile: string;
  saveEvery?: number;
  signal?: AbortSignal;
  /** Where images are processed (an ImagePool's process); default this thread. The next step is always made ahead. */
  images?: ImageProcessor;
  onStep?: (report: StepReport & { epoch: number; totalSteps: number }) => void;
}

export function isFinishedCheckpoint(dir: string): boolean {
  return existsSync(join(dir, 'config.json')) || existsSync(join(dir, 'adapter_config.json'));
}

/**
 * Trains and returns the trained model (adapters attached for LoRA), or, when outDir already holds the
 * finished result, the model loaded from it. The caller disposes the model.
 */
export async function trainRun(tokenizer: QwenTokenizer, options: TrainRunOptions): Promise<Qwen3VL> {
  const { config, samples } = options;
  if (samples.length === 0) throw new Error('no training samples');
  if (isFinishedCheckpoint(options.outDir)) {
    if (!config.lora) return Qwen3VL.load(options.outDir, options.load);
    const model = await Qwen3VL.load(options.modelDir, options.load);
    await model.loadAdapter(options.outDir);
    return model;
  }
  const steps = planSteps(samples.length, config);
  const model = await Qwen3VL.load(options.modelDir, options.load);
  try {
    const trainer = await model.createTrainer(trainerOptions(config, steps.length));
    let done = 0;
    if (existsSync(join(options.stateDir, 'trainer_state.json'))) {
      await trainer.loadState(options.stateDir);
      done = (await trainer.info()).step;
    }
    await mkdir(dirname(options.logFile), { recursive: true });
    const saveEvery = options.saveEvery ?? 50;
    const images = cachedImages(options.images ?? processImage);
    await runSteps(trainer, steps, (micro) => modelBatch(tokenizer, micro.map((i) => samples[i]), options.datasetDir, options.settings, config.labelConvention, images), {
      from: done,
      signal: options.signal,
      onStep: async (report, { epoch }) => {
        const memory = process.memoryUsage();
        await appendFile(options.logFile, `${JSON.stringify({
          step: report.step, epoch, loss: report.loss, lr: report.learningRate, grad_norm: report.gradNorm, tokens: report.tokens,
          tokens_per_s: report.inputTokens / report.seconds, seconds: report.seconds, optimizer_seconds: report.optimizerSeconds, rss_bytes: memory.rss, time: new Date().toISOString(),
        })}\n`);
        options.onStep?.({ ...report, epoch, totalSteps: steps.length });
        if (report.step % saveEvery === 0 && report.step < steps.length) await trainer.saveState(options.stateDir);
      },
    });
    await trainer.save(options.outDir);
    rmSync(options.stateDir, { recursive: true, force: true });
    return model;
  } catch (error) {
    model.dispose();
    throw error;
  }
}
