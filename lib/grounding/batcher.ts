// Dynamic batching: requests are prepared (images decoded, prompts tokenized) as they arrive while the engine runs
// the previous batch; when the engine is free, the queued requests, up to maxBatch, go into one engine call.
//
// A request's life: queued -> forming (taken into the next batch, waiting for its own preparation) -> running ->
// settled. An abort while queued or forming drops it and rejects it with an AbortError; once running, the request's
// signal goes to the engine with its row (the runner decides what an aborted row returns).
//
// Grouped requests (one `group` object) always form a batch of their own, in submission order: a batch path that
// must reproduce fixed batches (evaluation) shares the queue with single requests without mixing with them.

/** An Error named 'AbortError', as the engine's aborts are. */
export function abortError(message: string, cause?: unknown): Error {
  const error = new Error(message, cause === undefined ? undefined : { cause });
  error.name = 'AbortError';
  return error;
}

export interface BatchRow<P> {
  input: P;
  signal?: AbortSignal;
  /** Seconds from submission to the start of the batch. */
  queueSeconds: number;
}

/**
 * Runs one batch; returns one entry per row, a value or the Error that row rejects with. `signal` aborts the whole
 * call (the batcher was closed).
 */
export type BatchRunner<P, R> = (rows: Array<BatchRow<P>>, signal: AbortSignal) => Promise<Array<R | Error>>;

interface Job<P, R> {
  prepared: Promise<P>;
  signal?: AbortSignal;
  group?: object;
  submitted: number;
  settled: boolean;
  resolve: (value: R) => void;
  reject: (error: Error) => void;
  unlisten: () => void;
}

export interface SubmitOptions {
  signal?: AbortSignal;
  /** Requests of one group form one batch of their own (at most maxBatch of them per group). */
  group?: object;
}

export class Batcher<P, R> {
  private readonly queue: Array<Job<P, R>> = [];
  /** Taken into the next batch, waiting for their preparation. */
  private forming: Array<Job<P, R>> = [];
  private running: Array<Job<P, R>> = [];
  private busy = false;
  private scheduled = false;
  private closed: Error | null = null;
  private readonly closing = new AbortController();
  private idle: Promise<void> = Promise.resolve();
  private markIdle: () => void = () => {};

  constructor(private readonly runner: BatchRunner<P, R>, readonly maxBatch: number) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`maxBatch must be a positive integer, got ${maxBatch}`);
  }

  /** Requests queued, forming a batch or running. */
  get pending(): number {
    return this.queue.length + this.forming.length + this.running.length;
  }

  submit(prepared: Promise<P>, options: SubmitOptions = {}): Promise<R> {
    prepared.catch(() => {}); // a failed preparation surfaces when its batch forms (or never, if aborted first)
    if (this.closed) return Promise.reject(this.closed);
    const { signal, group } = options;
    if (signal?.aborted) return Promise.reject(abortError('the request was aborted before it was queued', signal.reason));
    return new Promise<R>((resolve, reject) => {
      const job: Job<P, R> = { prepared, signal, group, submitted: performance.now(), settled: false, resolve, reject, unlisten: () => {} };
      if (signal) {
        const onAbort = () => this.abortWaiting(job);
        signal.addEventListener('abort', onAbort, { once: true });
        job.unlisten = () => signal.removeEventListener('abort', onAbort);
      }
      this.queue.push(job);
      this.schedule();
    });
  }

  /**
   * Rejects every request not yet running with `error`, aborts the running batch through the runner's signal and
   * resolves once it has settled. Later submits reject with `error`.
   */
  close(error: Error): Promise<void> {
    if (!this.closed) {
      this.closed = error;
      for (const job of [...this.queue.splice(0), ...this.forming]) this.settle(job, error);
      this.closing.abort(error);
    }
    return this.busy ? this.idle : Promise.resolve();
  }

  private abortWaiting(job: Job<P, R>): void {
    const at = this.queue.indexOf(job);
    if (at >= 0) this.queue.splice(at, 1);
    else if (!this.forming.includes(job)) return; // running: the runner handles its row
    this.settle(job, abortError('the request was aborted before its batch started', job.signal?.reason));
  }

  private settle(job: Job<P, R>, outcome: { value: R } | Error): void {
    if (job.settled) return;
    job.settled = true;
    job.unlisten();
    if (outcome instanceof Error) job.reject(outcome);
    else job.resolve(outcome.value);
  }

  /** Starts the next batch after the current synchronous code, so requests submitted together batch together. */
  private schedule(): void {
    if (this.busy || this.scheduled || this.queue.length === 0 || this.closed) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      if (this.busy || this.queue.length === 0 || this.closed) return;
      this.busy = true;
      this.idle = new Promise((done) => (this.markIdle = done));
      void this.loop();
    });
  }

  /** Takes the next batch: the head's group, or the first maxBatch ungrouped requests. */
  private take(): Array<Job<P, R>> {
    const head = this.queue[0]!;
    const picked: Array<Job<P, R>> = [];
    for (const job of this.queue) {
      if (picked.length === this.maxBatch) break;
      if (head.group ? job.group === head.group : job.group === undefined) picked.push(job);
    }
    for (const job of picked) this.queue.splice(this.queue.indexOf(job), 1);
    return picked;
  }

  private async loop(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.closed) {
        // Wait for the head's preparation first: requests arriving meanwhile join the batch.
        const head = this.queue[0]!;
        if (!head.group) await head.prepared.catch(() => {});
        if (this.queue.length === 0 || this.closed) break;
        this.forming = this.take();
        const inputs = await Promise.allSettled(this.forming.map((job) => job.prepared));
        const rows: Array<BatchRow<P>> = [];
        const jobs: Array<Job<P, R>> = [];
        const started = performance.now();
        this.forming.forEach((job, i) => {
          const input = inputs[i]!;
          if (job.settled) return; // aborted while forming, or the batcher was closed
          if (input.status === 'rejected') {
            this.settle(job, input.reason instanceof Error ? input.reason : new Error(String(input.reason)));
            return;
          }
          if (job.signal?.aborted) {
            this.settle(job, abortError('the request was aborted before its batch started', job.signal.reason));
            return;
          }
          rows.push({ input: input.value, signal: job.signal, queueSeconds: (started - job.submitted) / 1000 });
          jobs.push(job);
        });
        this.forming = [];
        if (jobs.length === 0 || this.closed) continue;
        this.running = jobs;
        let results: Array<R | Error>;
        try {
          results = await this.runner(rows, this.closing.signal);
          if (results.length !== jobs.length) throw new Error(`the batch runner returned ${results.length} results for ${jobs.length} rows`);
        } catch (error) {
          const failure = this.closed ?? (error instanceof Error ? error : new Error(String(error)));
          results = jobs.map(() => failure);
        }
        jobs.forEach((job, i) => {
          const result = results[i]!;
          this.settle(job, result instanceof Error ? result : { value: result });
        });
        this.running = [];
      }
    } finally {
      this.forming = [];
      this.running = [];
      this.busy = false;
      this.markIdle();
      this.schedule();
    }
  }
}
