// What the Personalizer writes and answers: decisions (decisions.jsonl), the pointer to the version served
// (adapters/<user>/current.json), a user's status, a feedback receipt, job progress and events.

/** What a candidate starts from: a fresh LoRA on the base model, or the adapter served now. */
export type TrainFrom = 'base' | 'current';

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
