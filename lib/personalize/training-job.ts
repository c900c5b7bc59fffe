// One training job of a user: a candidate LoRA trained aside on the Grounder's model on the samples before the
// held-out window (one optimizer step per native call, so inference batches run between steps), saved, evaluated
// beside what the user is served, then promoted or rejected under the user's lock. A job that fails quarantines the
// samples that cannot be trained on and is queued again without them.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sample } from '../data/types.js';
import type { Trainer } from '../engine/trainer.js';
import type { Grounder } from '../grounding/grounder.js';
import type { ImageProcessor } from '../processor/image-pool.js';
import { modelBatch, type PromptSettings } from '../processor/inputs.js';
import type { TrainConfig } from '../training/presets.js';
import { planSteps, runSteps, trainerOptions } from '../training/loop.js';
import { fsyncDir, fsyncTree, writeFileDurable } from './durable.js';
import { heldOutMetrics, isBetter, timeSplit } from './evaluation.js';
import { jobFile, type Job, type JobMarker, type JobQueue } from './job-queue.js';
import type { DecisionLedger } from './ledger.js';
import type { FeedbackStore } from './store.js';
import type { Decision, HeldOutMetrics, JobProgress, PersonalizerEvent, TrainFrom } from './types.js';
import type { ServedVersions } from './versions.js';

/** The engine adapter name a candidate is evaluated under ('~' is not allowed in user ids, so it never collides). */
export const candidateName = (user: string) => `${user}~candidate`;

/** What a job works with: the Personalizer's settings and parts. */
export interface JobContext {
  dir: string;
  grounder: Grounder;
  store: FeedbackStore;
  served: ServedVersions;
  ledger: DecisionLedger;
  queue: JobQueue;
  config: TrainConfig;
  lora: { rank: number; alpha: number; dropout: number };
  from: TrainFrom;
  holdout: number;
  minHoldout: number;
  evalBatch: number;
  images: ImageProcessor;
  /** Aborts the job (the Personalizer was closed). */
  signal: AbortSignal;
  /** Logs a decision. */
  record(decision: Decision): Promise<void>;
  emit(event: PersonalizerEvent): void;
}

export class JobRunner {
  /** The running job's progress (null when none runs). */
  progress: JobProgress | null = null;

  constructor(private readonly context: JobContext) {}

  async run(job: Job): Promise<void> {
    const { dir, grounder, store, served, config, lora, signal } = this.context;
    const { user } = job;
    const startedAt = new Date().toISOString();
    const started = performance.now();
    const total = store.count(user);
    const left = this.context.ledger.quarantined(user);
    const samples = store.samples(user, total).filter((sample) => !left.has(sample.id));
    const split = timeSplit(samples.length, this.context.holdout, this.context.minHoldout);
    if (split.train < 1) return;
    const current = served.current(user);
    const continued = this.context.from === 'current' && current?.version != null ? current : null;
    const trainFrom = continued && continued.train_end < split.train ? continued.train_end : 0;
    const trainSamples = samples.slice(trainFrom, split.train);
    const holdoutSamples = samples.slice(split.train);
    const steps = planSteps(trainSamples.length, config);
    const settings: PromptSettings = { style: grounder.style, image: grounder.image };
    const marker: JobMarker = { user, total, queued_at: job.queuedAt, started_at: startedAt, pid: process.pid };
    await writeFileDurable(jobFile(dir, user), `${JSON.stringify(marker, null, 2)}\n`);
    const progress: JobProgress = { user, phase: 'training', step: 0, steps: steps.length, resumed: job.resumed };
    this.progress = progress;
    this.context.emit({ type: 'started', user, steps: steps.length, samples: total, resumed: job.resumed });

    const candidateDir = served.candidateFolder(user);
    const name = candidateName(user);
    let trainer: Trainer | null = null;
    let registered = false;
    const losses: number[] = [];
    const base: Omit<Decision, 'decision' | 'version'> = {
      time: '', user, previous: current?.version ?? null,
      samples: { total, train: split.train, trained: trainSamples.length, holdout: split.holdout, holdout_from: split.train },
      from: continued ? `v${continued.version}` : 'base',
      queued_at: job.queuedAt, started_at: startedAt, ...(job.resumed ? { resumed: true } : {}),
    };
    const training = (seconds: number) => ({
      steps: steps.length, epochs: config.epochs, learning_rate: config.learningRate, batch_size: config.batchSize,
      gradient_accumulation: config.gradientAccumulation, first_loss: losses[0] ?? null, last_loss: losses.at(-1) ?? null, seconds,
    });
    let trainSeconds = 0;
    try {
      await rm(candidateDir, { recursive: true, force: true });
      trainer = await grounder.model.createTrainer(trainerOptions(config, steps.length, continued
        ? { init: served.versionFolder(user, continued), dropout: lora.dropout, aside: true }
        : { rank: lora.rank, alpha: lora.alpha, dropout: lora.dropout, aside: true }));
      let done = 0;
      await runSteps(trainer, steps, (micro) => modelBatch(grounder.tokenizer, micro.map((i) => trainSamples[i]!), store.userDir(user), settings, config.labelConvention, this.context.images), {
        signal,
        onStep: (report) => {
          losses.push(report.loss);
          progress.step = ++done;
          this.context.emit({ type: 'step', user, step: done, steps: steps.length, loss: report.loss, seconds: report.seconds });
        },
      });
      progress.phase = 'saving';
      await trainer.save(candidateDir, { signal });
      trainer.dispose();
      trainer = null;
      await fsyncTree(candidateDir);
      trainSeconds = (performance.now() - started) / 1000;

      progress.phase = 'evaluating';
      const evalStart = performance.now();
      await grounder.addAdapter(name, candidateDir);
      registered = true;
      const candidate = await this.evaluate(holdoutSamples, user, name);
      const decided = await served.withUser(user, async () => {
        // What is served now (a rollback may have moved it while the candidate trained).
        const servedNow = served.served(user);
        const baseline = await this.evaluate(holdoutSamples, user, servedNow === null ? null : user);
        this.context.emit({ type: 'evaluated', user, candidate, baseline });
        const evalSeconds = (performance.now() - evalStart) / 1000;
        progress.phase = 'deciding';
        const finished = () => {
          const now = new Date();
          return { time: now.toISOString(), finished_at: now.toISOString(), seconds: (now.getTime() - Date.parse(job.queuedAt)) / 1000 };
        };
        const common = { ...base, previous: servedNow, candidate, baseline, training: training(trainSeconds), train_seconds: trainSeconds, eval_seconds: evalSeconds };
        if (!isBetter(candidate, baseline)) {
          await rm(candidateDir, { recursive: true, force: true });
          return { ...common, ...finished(), decision: 'rejected' as const, version: servedNow, reason: `not better than ${servedNow === null ? 'the base model' : `version ${servedNow}`} on ${holdoutSamples.length} held-out samples` };
        }
        const version = await served.promote(user, { metrics: candidate, trainEnd: split.train, samples: total });
        return { ...common, ...finished(), decision: 'promoted' as const, version };
      });
      grounder.removeAdapter(name);
      registered = false;
      await this.context.record(decided);
      await rm(jobFile(dir, user), { force: true });
      await fsyncDir(join(dir, 'jobs'));
    } catch (error) {
      if (signal.aborted) throw error; // closed: the marker stays, the next open redoes the job
      const poisoned = await this.findPoisoned(user, [...trainSamples, ...holdoutSamples], settings).catch(() => []);
      const now = new Date();
      await this.context.record({
        ...base, time: now.toISOString(), decision: 'failed', version: served.served(user),
        error: (error as Error).message, training: training(trainSeconds || (performance.now() - started) / 1000),
        finished_at: now.toISOString(), seconds: (now.getTime() - Date.parse(job.queuedAt)) / 1000,
        ...(poisoned.length > 0 ? { quarantined: poisoned } : {}),
      });
      await rm(jobFile(dir, user), { force: true });
      await rm(candidateDir, { recursive: true, force: true });
      if (poisoned.length > 0) {
        this.context.emit({ type: 'warning', message: `user ${user}: quarantined ${poisoned.length} sample(s) that cannot be trained on (${poisoned.map((p) => p.id).join(', ')}); training again without them` });
        // Each retry leaves out at least one more sample, so this ends.
        if (!this.context.queue.isQueued(user)) this.context.queue.add({ user, queuedAt: now.toISOString(), resumed: false });
      }
      throw error;
    } finally {
      trainer?.dispose();
      if (registered) {
        try {
          grounder.removeAdapter(name);
        } catch {
          // the Grounder was disposed
        }
      }
      this.progress = null;
    }
  }

  private evaluate(samples: readonly Sample[], user: string, adapter: string | null): Promise<HeldOutMetrics> {
    return heldOutMetrics(this.context.grounder, samples, this.context.store.userDir(user), adapter, this.context.evalBatch, this.context.signal);
  }

  /**
   * After a failed job: each of its samples checked alone, as inference checks it and as training prepares it.
   * Those that fail are the job's poison; the others are fine (the failure had another cause).
   */
  private async findPoisoned(user: string, samples: readonly Sample[], settings: PromptSettings): Promise<Array<{ id: string; reason: string }>> {
    const dir = this.context.store.userDir(user);
    const poisoned: Array<{ id: string; reason: string }> = [];
    for (const sample of samples) {
      try {
        await this.context.grounder.checkInput(join(dir, sample.image), sample.instruction, sample.referring ?? null);
        await modelBatch(this.context.grounder.tokenizer, [sample], dir, settings, this.context.config.labelConvention, this.context.images);
      } catch (error) {
        poisoned.push({ id: sample.id, reason: (error as Error).message });
      }
    }
    return poisoned;
  }
}
