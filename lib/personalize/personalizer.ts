// Learning from feedback: a Personalizer keeps each user's taps (FeedbackStore), trains the user's LoRA adapter
// once N new samples have come in, beside inference on the Grounder's own model, and promotes the candidate only
// when it beats what the user is served now on the user's held-out samples.
//
//   const personalizer = await Personalizer.open({ dir: 'feedback', grounder, minNewSamples: 8 });
//   await personalizer.feedback({ user: 'alice', image, instruction, tap: { x, y } });   // durable once resolved
//   await grounder.ground(image, instruction, { user: personalizer.adapterFor('alice') });
//
// On disk (`dir`):
//   users/<user>/                 the user's samples: a gg-sample/1 dataset (store.ts)
//   adapters/<user>/v<N>/         promoted versions, PEFT folders, kept (versions.ts)
//   adapters/<user>/current.json  the version served (null: the base model), written atomically after v<N>
//   jobs/<user>.json              a training job under way (a restart redoes it; job-queue.ts)
//   decisions.jsonl               every decision (promoted, rejected, failed, rollback) with both metrics (ledger.ts)
//   personalizer.lock             the pid of the process that has the folder open (folder-lock.ts)
//
// Training runs on the Grounder's model with an aside LoRA trainer (the adapter is in the layers only during the
// trainer's own calls), one optimizer step per native call, so inference batches run between steps (training-job.ts).
// One job at a time; users wait in a queue. Candidates are judged on the user's most recent samples (evaluation.ts).
// This file ties the parts together: opening and restoring the folder, feedback, the user-facing calls.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Grounder } from '../grounding/grounder.js';
import { PIGG_LORA, type TrainConfig } from '../training/presets.js';
import { timeSplit } from './evaluation.js';
import { takeLock } from './folder-lock.js';
import { JobQueue, jobFile, readJobMarkers } from './job-queue.js';
import { DecisionLedger } from './ledger.js';
import { checkOptions, DEFAULT_HOLDOUT, DEFAULT_MIN_HOLDOUT, DEFAULT_MIN_NEW_SAMPLES, trainConfig, type PersonalizerOptions } from './options.js';
import { checkUser, feedbackError, FeedbackStore, type FeedbackInput } from './store.js';
import { JobRunner } from './training-job.js';
import type { Decision, FeedbackReceipt, JobProgress, PersonalizerEvent, TrainFrom, UserStatus } from './types.js';
import { ServedVersions } from './versions.js';

export { DEFAULT_HOLDOUT, DEFAULT_MIN_HOLDOUT, DEFAULT_MIN_NEW_SAMPLES, type PersonalizerOptions } from './options.js';
export { isBetter, timeSplit } from './evaluation.js';
export { candidateName } from './training-job.js';
export type { CurrentPointer, Decision, DecisionKind, FeedbackReceipt, HeldOutMetrics, JobProgress, PersonalizerEvent, TrainFrom, UserStatus } from './types.js';

export class Personalizer {
  readonly dir: string;
  readonly minNewSamples: number;
  readonly holdout: number;
  readonly minHoldout: number;
  readonly from: TrainFrom;
  readonly config: TrainConfig;
  readonly lora: { rank: number; alpha: number; dropout: number };
  readonly auto: boolean;
  private readonly grounder: Grounder;
  private readonly onEvent?: (event: PersonalizerEvent) => void;
  private readonly stop = new AbortController();
  private readonly served: ServedVersions;
  private readonly queue: JobQueue;
  private readonly jobs: JobRunner;
  private closed: Promise<void> | null = null;

  private constructor(options: PersonalizerOptions, readonly store: FeedbackStore, private readonly ledger: DecisionLedger, private readonly lock: string) {
    this.dir = options.dir;
    this.grounder = options.grounder;
    this.minNewSamples = options.minNewSamples ?? DEFAULT_MIN_NEW_SAMPLES;
    this.holdout = options.holdout ?? DEFAULT_HOLDOUT;
    this.minHoldout = options.minHoldout ?? DEFAULT_MIN_HOLDOUT;
    this.from = options.from ?? 'base';
    this.config = trainConfig(options);
    this.lora = options.lora ?? { ...PIGG_LORA };
    this.auto = options.auto ?? true;
    this.onEvent = options.onEvent;
    this.served = new ServedVersions(this.dir, this.grounder);
    const signal = this.stop.signal;
    this.queue = new JobQueue(signal, {
      run: (job) => this.jobs.run(job),
      failed: (job, error) => {
        if (!signal.aborted) this.emit({ type: 'warning', message: `user ${job.user}: ${error.message}` });
      },
      // More samples may have come in while the job ran.
      done: (job) => {
        if (this.auto) this.maybeQueue(job.user, new Date().toISOString());
      },
    });
    this.jobs = new JobRunner({
      dir: this.dir, grounder: this.grounder, store, served: this.served, ledger, queue: this.queue, config: this.config, lora: this.lora,
      from: this.from, holdout: this.holdout, minHoldout: this.minHoldout, evalBatch: options.evalBatch ?? options.grounder.maxBatch,
      // The Grounder's image workers by default: training images are not decoded on the event loop either.
      images: options.images ?? options.grounder.imageProcessor,
      signal, record: (decision) => this.record(decision), emit: (event) => this.emit(event),
    });
  }

  /**
   * Opens the feedback folder on a Grounder: the versions served are added to the Grounder (under the user's id),
   * pending counts are recomputed from the manifests and the decision log, a job a previous process left unfinished
   * is queued again, and users with enough new samples are queued. Taps then come in through feedback().
   */
  static async open(options: PersonalizerOptions): Promise<Personalizer> {
    checkOptions(options);
    const lock = await takeLock(options.dir);
    let personalizer: Personalizer;
    try {
      // Taps are checked by the Grounder that answers them: what it would refuse to ground is never stored.
      const grounder = options.grounder;
      const { store, repaired } = await FeedbackStore.open(join(options.dir, 'users'), { check: (image, instruction, referring) => grounder.checkInput(image, instruction, referring) });
      const { ledger, repaired: logRepaired } = await DecisionLedger.open(join(options.dir, 'decisions.jsonl'));
      personalizer = new Personalizer(options, store, ledger, lock);
      for (const [user, bytes] of Object.entries(repaired)) personalizer.emit({ type: 'warning', message: `users/${user}/manifest.jsonl: cut off a torn last line (${bytes} bytes)` });
      if (logRepaired > 0) personalizer.emit({ type: 'warning', message: `decisions.jsonl: cut off a torn last line (${logRepaired} bytes)` });
      await personalizer.restore();
    } catch (error) {
      await rm(lock, { force: true });
      throw error;
    }
    personalizer.queue.start();
    return personalizer;
  }

  private async restore(): Promise<void> {
    // Users and adapters share one namespace (a request's `user` names either): an adapter added before the
    // Personalizer opened (pigg serve --adapters) under a user's id is an error, not a silent replacement.
    const own = (a: { name: string; path: string }) => resolve(a.path).startsWith(resolve(this.served.folder(a.name)) + sep);
    const taken = this.grounder.adapters().filter((a) => !own(a) && (this.store.has(a.name) || existsSync(this.served.folder(a.name)))).map((a) => a.name);
    if (taken.length > 0) {
      throw feedbackError('INVALID_ARGUMENT', 'adapters', `${taken.map((n) => `'${n}'`).join(', ')} ${taken.length === 1 ? 'is' : 'are'} both an adapter served and a feedback user of ${this.dir}; rename the adapter folder (users and adapters share one namespace)`);
    }
    await this.served.restore((message) => this.emit({ type: 'warning', message }));
    // Jobs a previous process began: redone first, in the order they were queued.
    for (const marker of await readJobMarkers(this.dir)) {
      // Decided already (the process died between the decision and removing the marker): nothing to redo.
      if (this.ledger.trainedThrough(marker.user) >= marker.total || !this.store.has(marker.user)) {
        await rm(jobFile(this.dir, marker.user), { force: true });
        continue;
      }
      this.queue.add({ user: marker.user, queuedAt: marker.queued_at, resumed: true });
    }
    if (this.auto) for (const user of this.store.userIds()) this.maybeQueue(user, new Date().toISOString());
  }

  /** Samples of the user since the last decision. */
  pending(user: string): number {
    return this.store.count(user) - this.ledger.trainedThrough(user);
  }

  /** The adapter name to ground the user with: the user's id once a version is served, else null (the base model). */
  adapterFor(user: string): string | null {
    return this.served.served(user) === null ? null : user;
  }

  /** Users with samples or a served version. */
  users(): string[] {
    return [...new Set([...this.store.userIds(), ...this.served.users()])].sort();
  }

  /** Stores a tap durably and queues the user's training when enough new samples came in. */
  async feedback(input: FeedbackInput): Promise<FeedbackReceipt> {
    if (this.stop.signal.aborted) throw feedbackError('INVALID_ARGUMENT', 'feedback', 'the personalizer was closed');
    if (typeof input === 'object' && input !== null) this.checkNamespace(input.user);
    const stored = await this.store.append(input);
    const { user } = stored.sample;
    const now = new Date().toISOString();
    this.emit({ type: 'feedback', user, index: stored.index, pending: this.pending(user) });
    if (this.auto) this.maybeQueue(user, now);
    return { id: stored.sample.id, user, index: stored.index, samples: stored.count, pending: this.pending(user), scheduled: this.queue.scheduled(user) };
  }

  /**
   * A user id must not name the base model or an adapter that is not this Personalizer's (from --adapters or POST
   * /v1/adapters): a request's `user` names either, and a tap would otherwise switch that adapter's clients to the
   * base model. The adapter clash carries `conflict` (409).
   */
  private checkNamespace(user: unknown): void {
    if (typeof user !== 'string') return;
    if (user === this.grounder.modelName) throw feedbackError('INVALID_ARGUMENT', 'user', `user '${user}' is the base model's name; users name their adapters, so choose another id`);
    if (!this.knows(user) && this.grounder.adapters().some((a) => a.name === user)) {
      const message = `user '${user}' is the name of an adapter this server serves; users and adapters share one namespace, so choose another id`;
      throw Object.assign(feedbackError('INVALID_ARGUMENT', 'user', message), { conflict: true });
    }
  }

  /** Queues the user's training when enough new samples came in since the last decision. */
  private maybeQueue(user: string, queuedAt: string): void {
    if (this.stop.signal.aborted || this.queue.scheduled(user) || this.pending(user) < this.minNewSamples) return;
    this.enqueue(user, queuedAt);
  }

  private enqueue(user: string, queuedAt: string): void {
    this.queue.add({ user, queuedAt, resumed: false });
    this.emit({ type: 'queued', user, pending: this.pending(user) });
    this.queue.start();
  }

  /** Queues a training job for the user now, however few new samples there are (it needs minHoldout + 1 samples). */
  train(user: string): boolean {
    checkUser(user);
    const { train } = timeSplit(this.store.count(user), this.holdout, this.minHoldout);
    if (train < 1) throw feedbackError('INVALID_ARGUMENT', 'user', `user '${user}' has ${this.store.count(user)} samples: training needs at least ${this.minHoldout + 1}`);
    if (this.queue.scheduled(user)) return false;
    this.enqueue(user, new Date().toISOString());
    return true;
  }

  /** Promoted versions of the user kept on disk, ascending. */
  versions(user: string): Promise<number[]> {
    return this.served.list(user);
  }

  async status(user: string): Promise<UserStatus> {
    checkUser(user);
    const pointer = this.served.current(user);
    const version = pointer?.version ?? null;
    const index = this.queue.position(user);
    const job = this.jobs.progress;
    return {
      user,
      samples: this.store.count(user),
      pending: this.pending(user),
      version,
      adapter: version === null ? null : this.served.versionFolder(user, pointer!),
      metrics: version === null ? null : pointer!.metrics,
      versions: await this.versions(user),
      training: this.queue.active?.user === user,
      queued: index < 0 ? null : index,
      job: job?.user === user ? { ...job } : null,
      lastDecision: this.ledger.last(user),
      quarantined: this.quarantinedSamples(user),
    };
  }

  /** Whether the user has samples or a version (GET /v1/users/:id answers 404 otherwise). */
  knows(user: string): boolean {
    return this.store.has(user) || this.served.has(user);
  }

  /** The decisions logged, oldest first (all users, or one). */
  decisions(user?: string): Decision[] {
    return this.ledger.all().filter((d) => user === undefined || d.user === user);
  }

  /** The job running (null when idle) and the users queued. */
  get running(): JobProgress | null {
    const job = this.jobs.progress;
    return job && { ...job };
  }

  get queued(): string[] {
    return this.queue.users();
  }

  /** Samples quarantined for the user (ids). */
  quarantinedSamples(user: string): string[] {
    return [...this.ledger.quarantined(user)];
  }

  /**
   * Serves an earlier version (or the base model: null) for the user; the pointer is written atomically, then the
   * Grounder serves it. Logged as a 'rollback' decision.
   */
  rollback(user: string, version: number | null): Promise<UserStatus> {
    checkUser(user);
    return this.served.withUser(user, async () => {
      const previous = this.served.served(user);
      await this.served.rollback(user, version, (v) => this.ledger.promotion(user, v));
      await this.record({ time: new Date().toISOString(), user, decision: 'rollback', version, previous, reason: version === null ? 'rolled back to the base model' : `rolled back to version ${version}` });
      return this.status(user);
    });
  }

  /** Resolves when no job runs and none is queued. */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /**
   * Stops: new feedback is refused, the running job is aborted (its marker stays, so the next open redoes it), the
   * queue is dropped (it is rebuilt from disk on open). The Grounder keeps the adapters it serves.
   */
  close(): Promise<void> {
    if (!this.closed) {
      this.stop.abort(Object.assign(new Error('the personalizer was closed'), { name: 'AbortError' }));
      this.queue.clear();
      this.closed = (async () => {
        await this.queue.stopped();
        await rm(this.lock, { force: true });
        this.queue.wakeIdle();
      })();
    }
    return this.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private emit(event: PersonalizerEvent): void {
    try {
      this.onEvent?.(event);
    } catch (error) {
      process.emitWarning(`Personalizer onEvent threw: ${(error as Error).message}`);
    }
  }

  private async record(decision: Decision): Promise<void> {
    await this.ledger.record(decision);
    this.emit({ type: 'decision', decision });
  }
}
