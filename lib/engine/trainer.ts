// Trainer: fine-tuning with the Hugging Face Trainer's semantics, run by the native engine. One step() is one
// optimizer step over its micro-batches (each loss divided by their count, as transformers' gradient
// accumulation does for Qwen3-VL).
import { withSignal } from './control.js';
import type { NamedTensors, NativeTrainer, NativeTrainerOptions, StepReport, TrainerInfo } from './native.js';

export type { StepReport, TrainerInfo } from './native.js';

/** The engine's defaults are reported by engineDefaults().trainer (lib/engine/native.ts). */
export interface TrainerOptions extends NativeTrainerOptions {
  /** Called after every optimizer step. */
  onStep?: (report: StepReport) => void;
}

export class Trainer {
  constructor(private handle: NativeTrainer | null, private readonly onStep?: (report: StepReport) => void) {}

  /**
   * One optimizer step over a micro-batch or a list of them. An aborted signal stops it within one layer, applies
   * no update and leaves the trainer usable; the step rejects with the signal's reason.
   */
  async step(batch: NamedTensors | NamedTensors[], options: { signal?: AbortSignal } = {}): Promise<StepReport> {
    const handle = this.live();
    const report = await withSignal(options.signal, (control) => handle.step(Array.isArray(batch) ? batch : [batch], control));
    this.onStep?.(report);
    return report;
  }

  /** Gradients of the named parameters for one batch, without an update (checks against references). */
  gradients(batch: NamedTensors, names: string[]): Promise<NamedTensors> {
    return this.live().gradients(batch, names);
  }

  /** A folder transformers can load, or with LoRA a PEFT adapter folder (mergeAdapter: a merged checkpoint). */
  save(dir: string, options: { mergeAdapter?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const handle = this.live();
    return withSignal(options.signal, (control) => handle.save(dir, options.mergeAdapter ?? false, control));
  }

  /** Weights or adapter, optimizer moments, master weights, step and RNG: everything to resume. */
  saveState(dir: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const handle = this.live();
    return withSignal(options.signal, (control) => handle.saveState(dir, control));
  }

  /** Resumes from saveState's folder (the trainer must have the same setup). */
  loadState(dir: string): Promise<void> {
    return this.live().loadState(dir);
  }

  async info(): Promise<TrainerInfo> {
    return this.live().info();
  }

  /** Releases the trainer (its moments and master weights); the model stays. */
  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private live(): NativeTrainer {
    if (!this.handle) throw new Error('the trainer was disposed');
    return this.handle;
  }
}
