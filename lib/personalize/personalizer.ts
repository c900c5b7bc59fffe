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
//   adapters/<user>/v<N>/         promoted versions, PEFT folders, kept
//   adapters/<user>/current.json  the version served (null: the base model), written atomically after v<N>
//   jobs/<user>.json              a training job under way (a restart redoes it)
//   decisions.jsonl               every decision (promoted, rejected, failed, rollback) with both metrics
//
// Training runs on the Grounder's model with an aside LoRA trainer (the adapter is in the layers only during the
// trainer's own calls), one optimizer step per native call, so inference batches run between steps. One job at a
// time; users wait in a queue.
//
// The held-out set is time-ordered: the last `holdout` share of the user's samples (at least minHoldout). The
// candidate trains on the samples before it. Because a user's sample count only grows, every earlier version was
// trained on samples before an earlier (so earlier-starting) window, i.e. never on the new held-out samples: the
// candidate and the version served now are compared on samples neither has seen, which PIGG's K-fold (whose test
// folds reshuffle as samples arrive) cannot give for a version trained before. It also asks the question that
// matters when serving: does the candidate answer the user's most recent taps better. And it costs one training
// per decision rather than K.
//
// Over 450 lines because a job (train, evaluate, decide, quarantine, record) shares its queue, user locks and pointers
// with feedback, rollback and restore; the store, durable writes, the JSONL log and the training loop are elsewhere.
import { existsSync } from 'node:fs';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Sample } from '../data/types.js';
import type { Trainer } from '../engine/trainer.js';
import { scoreRecord, summarize } from '../data/records.js';
import { modelBatch, type PromptSettings } from '../processor/inputs.js';
import { PIGG_LORA, PRESETS, type PresetName, type TrainConfig } from '../training/presets.js';
import { planSteps, runSteps, trainerOptions } from '../training/loop.js';
import type { Grounder } from '../grounding/grounder.js';
import type { ImageProcessor } from '../processor/image-pool.js';
import { fsyncDir, mkdirDurable, renameDurable, writeFileDurable } from './durable.js';
import { JsonlLog } from './jsonl.js';
import { checkUser, feedbackError, FeedbackStore, type FeedbackInput } from './store.js';

export const DEFAULT_MIN_NEW_SAMPLES = 8;
export const DEFAULT_HOLDOUT = 0.25;
export const DEFAULT_MIN_HOLDOUT = 2;

export type TrainFrom = 'base' | 'current';

export interface PersonalizerOptions {
  /** The feedback folder (created if missing). */
  dir: string;
  /** Serves the answers; its model also trains the candidates (aside). */
  grounder: Grounder;
  /** Train a user once this many samples came in since the user's last decision (default 8). */
  minNewSamples?: number;
  /** Share of the user's samples held out, the most recent ones (default 0.25). */
  holdout?: number;
  /** At least this many samples are held out (default 2). */
  minHoldout?: number;
  /**
   * 'base' (default): each candidate is a fresh LoRA on the Grounder's model (the global model), trained on all the
   * user's training samples, as PIGG's personal fine-tune. 'current': it continues the adapter served now (its
   * rank and alpha) on the training samples that came after that version's own.
   */
  from?: TrainFrom;
  /** The training preset (default PIGG's 'pigg-personal': lr 2e-5, 3 epochs, batch 1x4, warmup 5). */
  preset?: PresetName;
  /** Changes to the preset (learningRate, epochs, gradientAccumulation, warmupSteps, ...). */
  overrides?: Partial<Omit<TrainConfig, 'lora'>>;
  /** LoRA of a fresh candidate (default PIGG's r 8, alpha 32, dropout 0.1). */
  lora?: { rank: number; alpha: number; dropout: number };
  /** Samples per generate call when evaluating (default the Grounder's maxBatch). */
  evalBatch?: number;
  /** Train when a user reaches minNewSamples (default true); false: only train() starts jobs. */
  auto?: boolean;
  /** Where training images are decoded and resized (an ImagePool's process); default the Grounder's. */
  images?: ImageProcessor;
  /** Progress and decisions, for logs. */
  onEvent?: (event: PersonalizerEvent) => void;
}

/** The metrics of an adapter (or the base model) on a held-out set, PIGG's scoring (acc@140, L2 on the grid). */
export interface HeldOutMetrics {
  accuracy: number | null;
  mean_l2: number | null;
  median_l2: number | null;
  n: number;
  parse_failures: number;
}

export type DecisionKind = 'promoted' | 'rejected' | 'failed' | 'rollback';

/** One line of decisions.jsonl. */
export interface Decision {
  time: string;
  user: string;
  decision: DecisionKind;
  /** The version served after the decision (null: the base model). */
  version: number | null;
  /** The version served before it. */
  previous: number | null;
  /** Why (rejections, failures, rollbacks). */
  reason?: string;
  /** The candidate's metrics on the held-out samples. */
  candidate?: HeldOutMetrics;
  /** The metrics of what was served (version `previous`, or the base model) on the same samples. */
  baseline?: HeldOutMetrics;
  samples?: {
    /** The user's samples the job was planned on. */
    total: number;
    /** Samples before the held-out window (the training split). */
    train: number;
    /** Samples the candidate was trained on (all of the split, or those after the continued version's). */
    trained: number;
    holdout: number;
    /** Index of the first held-out sample. */
    holdout_from: number;
  };
  /** What the candidate started from: 'base' or the version it continued ('v3'). */
  from?: string;
  training?: { steps: number; epochs: number; learning_rate: number; batch_size: number; gradient_accumulation: number; first_loss: number | null; last_loss: number | null; seconds: number };
  /** When the feedback that started the job arrived, when the job started and ended. */
  queued_at?: string;
  started_at?: string;
  finished_at?: string;
  /** Seconds: training, evaluation, and from queued_at to the decision. */
  train_seconds?: number;
  eval_seconds?: number;
  seconds?: number;
  /** The job was begun by an earlier process and redone after a restart. */
  resumed?: boolean;
  error?: string;
  /**
   * A failed job's samples that fail the Grounder's input checks or cannot be made into a training batch (stored by
   * an older version, or edited on disk), by id with the reason: left out of every later job of the user.
   */
  quarantined?: Array<{ id: string; reason: string }>;
}

/** adapters/<user>/current.json. */
export interface CurrentPointer {
  user: string;
  /** null: the base model is served. */
  version: number | null;
  /** The version's folder, relative to adapters/<user>/ ('v3'). */
  path: string | null;
  since: string;
  /** Held-out metrics the version was promoted with (on that decision's held-out samples). */
  metrics: HeldOutMetrics | null;
  /** Where its training split ended (samples 0..train_end-1 precede its held-out window). */
  train_end: number;
  /** The user's sample count when it was trained. */
  samples: number;
}

export interface UserStatus {
  user: string;
  /** Samples stored. */
  samples: number;
  /** Samples that came in since the user's last decision (training waits for minNewSamples of them). */
  pending: number;
  /** The version served (null: the base model) and its folder. */
  version: number | null;
  adapter: string | null;
  /** Held-out metrics the version served was promoted with. */
  metrics: HeldOutMetrics | null;
  /** Promoted versions kept on disk. */
  versions: number[];
  training: boolean;
  /** Position in the queue (0 = next), null when not queued. */
  queued: number | null;
  /** The current job's progress when training this user. */
  job: JobProgress | null;
  lastDecision: Decision | null;
  /** Ids of the user's samples quarantined after a failed job (never trained on again). */
  quarantined: string[];
}

export interface JobProgress {
  user: string;
  phase: 'training' | 'saving' | 'evaluating' | 'deciding';
  step: number;
  steps: number;
  resumed: boolean;
}

export interface FeedbackReceipt {
  id: string;
  user: string;
  /** The sample's index in the user's dataset. */
  index: number;
  samples: number;
  pending: number;
  /** A training job for the user is queued or running (this sample may have started it). */
  scheduled: boolean;
}

export type PersonalizerEvent =
  | { type: 'feedback'; user: string; index: number; pending: number }
  | { type: 'queued'; user: string; pending: number }
  | { type: 'started'; user: string; steps: number; samples: number; resumed: boolean }
  | { type: 'step'; user: string; step: number; steps: number; loss: number; seconds: number }
  | { type: 'evaluated'; user: string; candidate: HeldOutMetrics; baseline: HeldOutMetrics }
  | { type: 'decision'; decision: Decision }
  | { type: 'warning'; message: string };

interface Job {
  user: string;
  queuedAt: string;
  resumed: boolean;
}

/** jobs/<user>.json */
interface JobMarker {
  user: string;
  total: number;
  queued_at: string;
  started_at: string;
  pid: number;
}

const CANDIDATE = 'candidate';
const VERSION_DIR = /^v([1-9][0-9]*)$/;

/** The engine adapter name a candidate is evaluated under ('~' is not allowed in user ids, so it never collides). */
export const candidateName = (user: string) => `${user}~candidate`;

const metricsOf = (summary: ReturnType<typeof summarize>): HeldOutMetrics => ({
  accuracy: summary.accuracy, mean_l2: summary.mean_l2, median_l2: summary.median_l2, n: summary.n, parse_failures: summary.parse_failures,
});

/**
 * Whether a candidate beats the baseline on the same held-out samples: higher accuracy (acc@140), or the same
 * accuracy and a lower mean L2. Equal on both is not better (the version served stays).
 */
export function isBetter(candidate: HeldOutMetrics, baseline: HeldOutMetrics): boolean {
  const acc = (m: HeldOutMetrics) => m.accuracy ?? 0;
  if (acc(candidate) !== acc(baseline)) return acc(candidate) > acc(baseline);
  const l2 = (m: HeldOutMetrics) => m.mean_l2 ?? Number.POSITIVE_INFINITY;
  return l2(candidate) < l2(baseline);
}

/** The time-ordered split of n samples: the last max(minHoldout, ceil(n * share)) are held out. */
export function timeSplit(n: number, share: number, minHoldout: number): { train: number; holdout: number } {
  const holdout = Math.min(n, Math.max(minHoldout, Math.ceil(n * share)));
  return { train: n - holdout, holdout };
}

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
  private readonly evalBatch: number;
  private readonly images: ImageProcessor;
  private readonly onEvent?: (event: PersonalizerEvent) => void;
  private readonly queue: Job[] = [];
  private readonly pointers = new Map<string, CurrentPointer>();
  private readonly trainedThrough = new Map<string, number>();
  private readonly lastDecisions = new Map<string, Decision>();
  /** Per user, the ids of samples quarantined (Decision.quarantined). */
  private readonly quarantined = new Map<string, Set<string>>();
  private job: JobProgress | null = null;
  /** The job taken off the queue, from then until its decision (job is its progress once it has begun). */
  private active: Job | null = null;
  private readonly stop = new AbortController();
  private loop: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];
  private closed: Promise<void> | null = null;
  /** Rollbacks and decisions of one user run one after another. */
  private readonly userLocks = new Map<string, Promise<unknown>>();

  private constructor(options: PersonalizerOptions, readonly store: FeedbackStore, private readonly log: JsonlLog<Decision>, private readonly lock: string) {
    this.dir = options.dir;
    this.grounder = options.grounder;
    this.minNewSamples = options.minNewSamples ?? DEFAULT_MIN_NEW_SAMPLES;
    this.holdout = options.holdout ?? DEFAULT_HOLDOUT;
    this.minHoldout = options.minHoldout ?? DEFAULT_MIN_HOLDOUT;
    this.from = options.from ?? 'base';
    this.config = { ...PRESETS[options.preset ?? 'pigg-personal'], ...options.overrides };
    this.lora = options.lora ?? { ...PIGG_LORA };
    this.auto = options.auto ?? true;
    this.evalBatch = options.evalBatch ?? options.grounder.maxBatch;
    // The Grounder's image workers by default: training images are not decoded on the event loop either.
    this.images = options.images ?? options.grounder.imageProcessor;
    this.onEvent = options.onEvent;
  }

  /** Checks the settings (before any file is touched). */
  private static check(options: PersonalizerOptions): void {
    const fail = (message: string): never => {
      throw feedbackError('INVALID_ARGUMENT', 'options', message);
    };
    if (typeof options.dir !== 'string' || options.dir === '') fail('dir must be the feedback folder');
    const n = options.minNewSamples ?? DEFAULT_MIN_NEW_SAMPLES;
    const minHoldout = options.minHoldout ?? DEFAULT_MIN_HOLDOUT;
    const share = options.holdout ?? DEFAULT_HOLDOUT;
    if (!Number.isInteger(minHoldout) || minHoldout < 1) fail(`minHoldout must be an integer >= 1, got ${minHoldout}`);
    if (!(share > 0 && share < 1)) fail(`holdout must be a share in (0, 1), got ${share}`);
    if (!Number.isInteger(n) || n < 1) fail(`minNewSamples must be an integer >= 1, got ${n}`);
    if (timeSplit(n, share, minHoldout).train < 1) fail(`minNewSamples ${n} leaves no training sample after holding out ${timeSplit(n, share, minHoldout).holdout}: use at least ${minHoldout + 1}`);
    if (options.from !== undefined && options.from !== 'base' && options.from !== 'current') fail(`from must be 'base' or 'current', got '${String(options.from)}'`);
    if (options.preset !== undefined && !(options.preset in PRESETS)) fail(`preset must be one of ${Object.keys(PRESETS).join(', ')}, got '${options.preset}'`);
    const config = { ...PRESETS[options.preset ?? 'pigg-personal'], ...options.overrides };
    if (!(config.learningRate >= 0)) fail(`learningRate must be >= 0, got ${config.learningRate}`);
    for (const key of ['epochs', 'batchSize', 'gradientAccumulation'] as const) {
      if (!Number.isInteger(config[key]) || config[key] < 1) fail(`${key} must be an integer >= 1, got ${config[key]}`);
    }
    if (options.evalBatch !== undefined && (!Number.isInteger(options.evalBatch) || options.evalBatch < 1)) fail(`evalBatch must be an integer >= 1, got ${options.evalBatch}`);
  }

  /**
   * Opens the feedback folder on a Grounder: the versions served are added to the Grounder (under the user's id),
   * pending counts are recomputed from the manifests and the decision log, a job a previous process left unfinished
   * is queued again, and users with enough new samples are queued. Taps then come in through feedback().
   */
  static async open(options: PersonalizerOptions): Promise<Personalizer> {
    Personalizer.check(options);
    const lock = await takeLock(options.dir);
    let personalizer: Personalizer;
    try {
      // Taps are checked by the Grounder that answers them: what it would refuse to ground is never stored.
      const grounder = options.grounder;
      const { store, repaired } = await FeedbackStore.open(join(options.dir, 'users'), { check: (image, instruction, referring) => grounder.checkInput(image, instruction, referring) });
      const { log, repaired: logRepaired } = await JsonlLog.open<Decision>(join(options.dir, 'decisions.jsonl'));
      personalizer = new Personalizer(options, store, log, lock);
      for (const [user, bytes] of Object.entries(repaired)) personalizer.emit({ type: 'warning', message: `users/${user}/manifest.jsonl: cut off a torn last line (${bytes} bytes)` });
      if (logRepaired > 0) personalizer.emit({ type: 'warning', message: `decisions.jsonl: cut off a torn last line (${logRepaired} bytes)` });
      await personalizer.restore();
    } catch (error) {
      await rm(lock, { force: true });
      throw error;
    }
    personalizer.kick();
    return personalizer;
  }

  private adaptersDir(user: string): string {
    return join(this.dir, 'adapters', user);
  }

  private jobFile(user: string): string {
    return join(this.dir, 'jobs', `${user}.json`);
  }

  private async restore(): Promise<void> {
    // Users and adapters share one namespace (a request's `user` names either): an adapter added before the
    // Personalizer opened (pigg serve --adapters) under a user's id is an error, not a silent replacement.
    const own = (a: { name: string; path: string }) => resolve(a.path).startsWith(resolve(this.adaptersDir(a.name)) + sep);
    const taken = this.grounder.adapters().filter((a) => !own(a) && (this.store.has(a.name) || existsSync(this.adaptersDir(a.name)))).map((a) => a.name);
    if (taken.length > 0) {
      throw feedbackError('INVALID_ARGUMENT', 'adapters', `${taken.map((n) => `'${n}'`).join(', ')} ${taken.length === 1 ? 'is' : 'are'} both an adapter served and a feedback user of ${this.dir}; rename the adapter folder (users and adapters share one namespace)`);
    }
    for (const decision of this.log.all()) {
      this.lastDecisions.set(decision.user, decision);
      this.noteQuarantined(decision);
      if (decision.decision !== 'rollback' && decision.samples) this.trainedThrough.set(decision.user, decision.samples.total);
    }
    const adapters = join(this.dir, 'adapters');
    const users = existsSync(adapters) ? (await readdir(adapters, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name) : [];
    for (const user of users) {
      const dir = this.adaptersDir(user);
      // Leftovers of a job or a folder write a kill interrupted.
      for (const entry of await readdir(dir)) {
        if (entry === CANDIDATE || entry.startsWith('.')) await rm(join(dir, entry), { recursive: true, force: true });
      }
      const pointerFile = join(dir, 'current.json');
      if (!existsSync(pointerFile)) continue;
      const pointer = JSON.parse(await readFile(pointerFile, 'utf8')) as CurrentPointer;
      if (pointer.version !== null) {
        const path = join(dir, pointer.path ?? `v${pointer.version}`);
        try {
          await this.grounder.addAdapter(user, path);
        } catch (error) {
          this.emit({ type: 'warning', message: `user ${user}: cannot serve version ${pointer.version} (${(error as Error).message}); serving the base model` });
          continue;
        }
      }
      this.pointers.set(user, pointer);
    }
    // Jobs a previous process began: redone first, in the order they were queued.
    const jobs = join(this.dir, 'jobs');
    const markers: JobMarker[] = [];
    if (existsSync(jobs)) {
      for (const entry of await readdir(jobs)) {
        const file = join(jobs, entry);
        if (!entry.endsWith('.json') || entry.startsWith('.')) {
          await rm(file, { recursive: true, force: true });
          continue;
        }
        try {
          markers.push(JSON.parse(await readFile(file, 'utf8')) as JobMarker);
        } catch {
          await rm(file, { force: true });
        }
      }
    }
    markers.sort((a, b) => (a.queued_at < b.queued_at ? -1 : a.queued_at > b.queued_at ? 1 : 0));
    for (const marker of markers) {
      // Decided already (the process died between the decision and removing the marker): nothing to redo.
      if ((this.trainedThrough.get(marker.user) ?? 0) >= marker.total || !this.store.has(marker.user)) {
        await rm(this.jobFile(marker.user), { force: true });
        continue;
      }
      this.queue.push({ user: marker.user, queuedAt: marker.queued_at, resumed: true });
    }
    if (this.auto) for (const user of this.store.userIds()) this.maybeQueue(user, new Date().toISOString());
  }

  /** Samples of the user since the last decision. */
  pending(user: string): number {
    return this.store.count(user) - (this.trainedThrough.get(user) ?? 0);
  }

  /** The adapter name to ground the user with: the user's id once a version is served, else null (the base model). */
  adapterFor(user: string): string | null {
    return (this.pointers.get(user)?.version ?? null) === null ? null : user;
  }

  /** Users with samples or a served version. */
  users(): string[] {
    return [...new Set([...this.store.userIds(), ...this.pointers.keys()])].sort();
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
    return { id: stored.sample.id, user, index: stored.index, samples: stored.count, pending: this.pending(user), scheduled: this.scheduled(user) };
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

  private scheduled(user: string): boolean {
    return this.active?.user === user || this.queue.some((j) => j.user === user);
  }

  private maybeQueue(user: string, queuedAt: string): void {
    if (this.stop.signal.aborted || this.scheduled(user) || this.pending(user) < this.minNewSamples) return;
    this.queue.push({ user, queuedAt, resumed: false });
    this.emit({ type: 'queued', user, pending: this.pending(user) });
    this.kick();
  }

  /** Queues a training job for the user now, however few new samples there are (it needs minHoldout + 1 samples). */
  train(user: string): boolean {
    checkUser(user);
    const { train } = timeSplit(this.store.count(user), this.holdout, this.minHoldout);
    if (train < 1) throw feedbackError('INVALID_ARGUMENT', 'user', `user '${user}' has ${this.store.count(user)} samples: training needs at least ${this.minHoldout + 1}`);
    if (this.scheduled(user)) return false;
    this.queue.push({ user, queuedAt: new Date().toISOString(), resumed: false });
    this.emit({ type: 'queued', user, pending: this.pending(user) });
    this.kick();
    return true;
  }

  /** Promoted versions of the user kept on disk, ascending. */
  async versions(user: string): Promise<number[]> {
    const dir = this.adaptersDir(checkUser(user));
    if (!existsSync(dir)) return [];
    return (await readdir(dir))
      .flatMap((name) => {
        const m = VERSION_DIR.exec(name);
        return m && existsSync(join(dir, name, 'adapter_config.json')) ? [Number(m[1])] : [];
      })
      .sort((a, b) => a - b);
  }

  async status(user: string): Promise<UserStatus> {
    checkUser(user);
    const pointer = this.pointers.get(user) ?? null;
    const version = pointer?.version ?? null;
    const index = this.queue.findIndex((j) => j.user === user);
    return {
      user,
      samples: this.store.count(user),
      pending: this.pending(user),
      version,
      adapter: version === null ? null : join(this.adaptersDir(user), pointer!.path ?? `v${version}`),
      metrics: version === null ? null : pointer!.metrics,
      versions: await this.versions(user),
      training: this.active?.user === user,
      queued: index < 0 ? null : index,
      job: this.job?.user === user ? { ...this.job } : null,
      lastDecision: this.lastDecisions.get(user) ?? null,
      quarantined: this.quarantinedSamples(user),
    };
  }

  /** Whether the user has samples or a version (GET /v1/users/:id answers 404 otherwise). */
  knows(user: string): boolean {
    return this.store.has(user) || this.pointers.has(user);
  }

  /** The decisions logged, oldest first (all users, or one). */
  decisions(user?: string): Decision[] {
    return this.log.all().filter((d) => user === undefined || d.user === user);
  }

  /** The job running (null when idle) and the users queued. */
  get running(): JobProgress | null {
    return this.job && { ...this.job };
  }

  get queued(): string[] {
    return this.queue.map((j) => j.user);
  }

  /**
   * Serves an earlier version (or the base model: null) for the user; the pointer is written atomically, then the
   * Grounder serves it. Logged as a 'rollback' decision.
   */
  rollback(user: string, version: number | null): Promise<UserStatus> {
    checkUser(user);
    return this.withUser(user, async () => {
      const previous = this.pointers.get(user)?.version ?? null;
      let pointer: CurrentPointer;
      if (version === null) {
        pointer = { user, version: null, path: null, since: new Date().toISOString(), metrics: null, train_end: 0, samples: 0 };
      } else {
        if (!Number.isInteger(version) || version < 1) throw feedbackError('INVALID_ARGUMENT', 'version', `version must be a positive integer or null (the base model), got ${JSON.stringify(version)}`);
        const kept = await this.versions(user);
        if (!kept.includes(version)) {
          throw Object.assign(feedbackError('INVALID_ARGUMENT', 'version', `user '${user}' has no version ${version} (${kept.length ? `versions: ${kept.join(', ')}` : 'none promoted'})`), { notFound: true });
        }
        const promoted = [...this.log.all()].reverse().find((d) => d.user === user && d.decision === 'promoted' && d.version === version);
        pointer = {
          user, version, path: `v${version}`, since: new Date().toISOString(), metrics: promoted?.candidate ?? null,
          train_end: promoted?.samples?.train ?? 0, samples: promoted?.samples?.total ?? 0,
        };
        // Loaded before the pointer moves, so a broken folder leaves everything as it was.
        await this.grounder.addAdapter(user, join(this.adaptersDir(user), `v${version}`));
      }
      await writeFileDurable(join(this.adaptersDir(user), 'current.json'), `${JSON.stringify(pointer, null, 2)}\n`);
      if (version === null) this.grounder.removeAdapter(user);
      this.pointers.set(user, pointer);
      await this.record({ time: new Date().toISOString(), user, decision: 'rollback', version, previous, reason: version === null ? 'rolled back to the base model' : `rolled back to version ${version}` });
      return this.status(user);
    });
  }

  /** Resolves when no job runs and none is queued. */
  idle(): Promise<void> {
    if (!this.loop && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops: new feedback is refused, the running job is aborted (its marker stays, so the next open redoes it), the
   * queue is dropped (it is rebuilt from disk on open). The Grounder keeps the adapters it serves.
   */
  close(): Promise<void> {
    if (!this.closed) {
      this.stop.abort(Object.assign(new Error('the personalizer was closed'), { name: 'AbortError' }));
      this.queue.length = 0;
      this.closed = (async () => {
        await this.loop?.catch(() => {});
        await rm(this.lock, { force: true });
        this.wakeIdle();
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

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private kick(): void {
    if (this.loop || this.stop.signal.aborted || this.queue.length === 0) return;
    this.loop = (async () => {
      try {
        while (this.queue.length > 0 && !this.stop.signal.aborted) {
          const job = this.queue.shift()!;
          this.active = job;
          await this.runJob(job).catch((error: Error) => {
            if (!this.stop.signal.aborted) this.emit({ type: 'warning', message: `user ${job.user}: ${error.message}` });
          });
          this.active = null;
          if (this.auto && !this.stop.signal.aborted) this.maybeQueueLater(job.user);
        }
      } finally {
        this.loop = null;
        this.job = null;
        this.active = null;
        if (this.queue.length > 0 && !this.stop.signal.aborted) this.kick();
        else this.wakeIdle();
      }
    })();
  }

  /** After a job: more samples may have come in while it ran. */
  private maybeQueueLater(user: string): void {
    if (this.scheduled(user) || this.pending(user) < this.minNewSamples) return;
    this.queue.push({ user, queuedAt: new Date().toISOString(), resumed: false });
    this.emit({ type: 'queued', user, pending: this.pending(user) });
  }

  private withUser<T>(user: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.userLocks.get(user) ?? Promise.resolve()).then(fn);
    this.userLocks.set(user, run.catch(() => {}));
    return run;
  }

  private noteQuarantined(decision: Decision): void {
    if (!decision.quarantined?.length) return;
    let ids = this.quarantined.get(decision.user);
    if (!ids) this.quarantined.set(decision.user, (ids = new Set()));
    for (const { id } of decision.quarantined) ids.add(id);
  }

  /** Samples quarantined for the user (ids). */
  quarantinedSamples(user: string): string[] {
    return [...(this.quarantined.get(user) ?? [])];
  }

  /**
   * After a failed job: each of its samples checked alone, as inference checks it and as training prepares it.
   * Those that fail are the job's poison; the others are fine (the failure had another cause).
   */
  private async findPoisoned(user: string, samples: readonly Sample[], settings: PromptSettings): Promise<Array<{ id: string; reason: string }>> {
    const dir = this.store.userDir(user);
    const poisoned: Array<{ id: string; reason: string }> = [];
    for (const sample of samples) {
      try {
        await this.grounder.checkInput(join(dir, sample.image), sample.instruction, sample.referring ?? null);
        await modelBatch(this.grounder.tokenizer, [sample], dir, settings, this.config.labelConvention, this.images);
      } catch (error) {
        poisoned.push({ id: sample.id, reason: (error as Error).message });
      }
    }
    return poisoned;
  }

  private async record(decision: Decision): Promise<void> {
    await this.log.append(decision);
    this.lastDecisions.set(decision.user, decision);
    this.noteQuarantined(decision);
    if (decision.decision !== 'rollback' && decision.samples) this.trainedThrough.set(decision.user, decision.samples.total);
    this.emit({ type: 'decision', decision });
  }

  private async evaluate(samples: readonly Sample[], user: string, adapter: string | null, signal: AbortSignal): Promise<HeldOutMetrics> {
    const results = await this.grounder.groundSamples(samples, this.store.userDir(user), { user: adapter, batchSize: this.evalBatch, signal });
    return metricsOf(summarize(results.map((result, i) => scoreRecord(samples[i]!, result))));
  }

  private async runJob(job: Job): Promise<void> {
    const { user } = job;
    const signal = this.stop.signal;
    const startedAt = new Date().toISOString();
    const started = performance.now();
    const total = this.store.count(user);
    const left = this.quarantined.get(user);
    const samples = this.store.samples(user, total).filter((sample) => !left?.has(sample.id));
    const split = timeSplit(samples.length, this.holdout, this.minHoldout);
    if (split.train < 1) return;
    const current = this.pointers.get(user) ?? null;
    const continued = this.from === 'current' && current?.version != null ? current : null;
    const trainFrom = continued && continued.train_end < split.train ? continued.train_end : 0;
    const trainSamples = samples.slice(trainFrom, split.train);
    const holdoutSamples = samples.slice(split.train);
    const config = this.config;
    const steps = planSteps(trainSamples.length, config);
    const settings: PromptSettings = { style: this.grounder.style, image: this.grounder.image };
    const marker: JobMarker = { user, total, queued_at: job.queuedAt, started_at: startedAt, pid: process.pid };
    await writeFileDurable(this.jobFile(user), `${JSON.stringify(marker, null, 2)}\n`);
    this.job = { user, phase: 'training', step: 0, steps: steps.length, resumed: job.resumed };
    this.emit({ type: 'started', user, steps: steps.length, samples: total, resumed: job.resumed });

    const candidateDir = join(this.adaptersDir(user), CANDIDATE);
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
      trainer = await this.grounder.model.createTrainer(trainerOptions(config, steps.length, continued
        ? { init: join(this.adaptersDir(user), continued.path ?? `v${continued.version}`), dropout: this.lora.dropout, aside: true }
        : { rank: this.lora.rank, alpha: this.lora.alpha, dropout: this.lora.dropout, aside: true }));
      let done = 0;
      await runSteps(trainer, steps, (micro) => modelBatch(this.grounder.tokenizer, micro.map((i) => trainSamples[i]!), this.store.userDir(user), settings, config.labelConvention, this.images), {
        signal,
        onStep: (report) => {
          losses.push(report.loss);
          this.job!.step = ++done;
          this.emit({ type: 'step', user, step: done, steps: steps.length, loss: report.loss, seconds: report.seconds });
        },
      });
      this.job.phase = 'saving';
      await trainer.save(candidateDir, { signal });
      trainer.dispose();
      trainer = null;
      await fsyncTree(candidateDir);
      trainSeconds = (performance.now() - started) / 1000;

      this.job.phase = 'evaluating';
      const evalStart = performance.now();
      await this.grounder.addAdapter(name, candidateDir);
      registered = true;
      const candidate = await this.evaluate(holdoutSamples, user, name, signal);
      const decided = await this.withUser(user, async () => {
        // What is served now (a rollback may have moved it while the candidate trained).
        const served = this.pointers.get(user)?.version ?? null;
        const baseline = await this.evaluate(holdoutSamples, user, served === null ? null : user, signal);
        this.emit({ type: 'evaluated', user, candidate, baseline });
        const evalSeconds = (performance.now() - evalStart) / 1000;
        if (this.job) this.job.phase = 'deciding';
        const finished = () => {
          const now = new Date();
          return { time: now.toISOString(), finished_at: now.toISOString(), seconds: (now.getTime() - Date.parse(job.queuedAt)) / 1000 };
        };
        const common = { ...base, previous: served, candidate, baseline, training: training(trainSeconds), train_seconds: trainSeconds, eval_seconds: evalSeconds };
        if (!isBetter(candidate, baseline)) {
          await rm(candidateDir, { recursive: true, force: true });
          return { ...common, ...finished(), decision: 'rejected' as const, version: served, reason: `not better than ${served === null ? 'the base model' : `version ${served}`} on ${holdoutSamples.length} held-out samples` };
        }
        const version = Math.max(0, ...(await this.versions(user))) + 1;
        const folder = join(this.adaptersDir(user), `v${version}`);
        await renameDurable(candidateDir, folder);
        const pointer: CurrentPointer = { user, version, path: `v${version}`, since: new Date().toISOString(), metrics: candidate, train_end: split.train, samples: total };
        await writeFileDurable(join(this.adaptersDir(user), 'current.json'), `${JSON.stringify(pointer, null, 2)}\n`);
        this.pointers.set(user, pointer);
        await this.grounder.addAdapter(user, folder);
        return { ...common, ...finished(), decision: 'promoted' as const, version };
      });
      this.grounder.removeAdapter(name);
      registered = false;
      await this.record(decided);
      await rm(this.jobFile(user), { force: true });
      await fsyncDir(join(this.dir, 'jobs'));
    } catch (error) {
      if (signal.aborted) throw error; // closed: the marker stays, the next open redoes the job
      const poisoned = await this.findPoisoned(user, [...trainSamples, ...holdoutSamples], settings).catch(() => []);
      const now = new Date();
      await this.record({
        ...base, time: now.toISOString(), decision: 'failed', version: this.pointers.get(user)?.version ?? null,
        error: (error as Error).message, training: training(trainSeconds || (performance.now() - started) / 1000),
        finished_at: now.toISOString(), seconds: (now.getTime() - Date.parse(job.queuedAt)) / 1000,
        ...(poisoned.length > 0 ? { quarantined: poisoned } : {}),
      });
      await rm(this.jobFile(user), { force: true });
      await rm(candidateDir, { recursive: true, force: true });
      if (poisoned.length > 0) {
        this.emit({ type: 'warning', message: `user ${user}: quarantined ${poisoned.length} sample(s) that cannot be trained on (${poisoned.map((p) => p.id).join(', ')}); training again without them` });
        // Each retry leaves out at least one more sample, so this ends.
        if (!this.queue.some((j) => j.user === user)) this.queue.push({ user, queuedAt: now.toISOString(), resumed: false });
      }
      throw error;
    } finally {
      trainer?.dispose();
      if (registered) {
        try {
          this.grounder.removeAdapter(name);
        } catch {
          // the Grounder was disposed
        }
      }
      this.job = null;
    }
  }
}

/**
 * One process at a time owns a feedback folder: <dir>/personalizer.lock holds its pid. A lock whose process is gone
 * (killed) is taken over; a live one (this process included: a Personalizer not closed) is an error.
 */
async function takeLock(dir: string): Promise<string> {
  await mkdirDurable(dir);
  const file = join(dir, 'personalizer.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(file, 'wx');
      try {
        await handle.writeFile(`${JSON.stringify({ pid: process.pid, since: new Date().toISOString() })}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return file;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder: { pid?: number } = {};
    try {
      holder = JSON.parse(await readFile(file, 'utf8')) as { pid?: number };
    } catch {
      // half written by a process killed while taking it: stale
    }
    if (typeof holder.pid === 'number' && isAlive(holder.pid)) {
      throw feedbackError('INVALID_ARGUMENT', 'dir', `${dir} is in use by ${holder.pid === process.pid ? 'another Personalizer of this process (close it first)' : `process ${holder.pid}`} (${file})`);
    }
    await rm(file, { force: true });
  }
  throw new Error(`cannot take ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** fsyncs every file of a folder (not recursive: adapter folders are flat) and the folder itself. */
async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const handle = await open(join(dir, entry.name), 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  await fsyncDir(dir);
}
