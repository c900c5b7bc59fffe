// The training jobs' queue: one job runs at a time and users wait in order. A job's marker (jobs/<user>.json) is
// written when it starts and removed at its decision, so the next open redoes a job a killed process left.
import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

export interface Job {
  user: string;
  queuedAt: string;
  resumed: boolean;
}

/** jobs/<user>.json */
export interface JobMarker {
  user: string;
  total: number;
  queued_at: string;
  started_at: string;
  pid: number;
}

export const jobFile = (dir: string, user: string) => join(dir, 'jobs', `${user}.json`);

/** The markers of jobs a previous process began, in the order they were queued; files that are not markers go. */
export async function readJobMarkers(dir: string): Promise<JobMarker[]> {
  const jobs = join(dir, 'jobs');
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
  return markers.sort((a, b) => (a.queued_at < b.queued_at ? -1 : a.queued_at > b.queued_at ? 1 : 0));
}

export interface JobHandlers {
  run(job: Job): Promise<void>;
  /** The job threw (it is still the active one). */
  failed(job: Job, error: Error): void;
  /** The job is over (no longer active); more jobs may be added here. */
  done(job: Job): void;
}

export class JobQueue {
  private readonly waiting: Job[] = [];
  /** The job taken off the queue, from then until its decision. */
  private current: Job | null = null;
  private loop: Promise<void> | null = null;
  private idleWaiters: Array<() => void> = [];

  /** Once `signal` is aborted no job starts. */
  constructor(private readonly signal: AbortSignal, private readonly handlers: JobHandlers) {}

  /** Queues a job; start() runs the queue. */
  add(job: Job): void {
    this.waiting.push(job);
  }

  /** The user's job is running or queued. */
  scheduled(user: string): boolean {
    return this.current?.user === user || this.isQueued(user);
  }

  isQueued(user: string): boolean {
    return this.waiting.some((j) => j.user === user);
  }

  /** Position in the queue (0 = next), -1 when not queued. */
  position(user: string): number {
    return this.waiting.findIndex((j) => j.user === user);
  }

  /** The users queued, in order. */
  users(): string[] {
    return this.waiting.map((j) => j.user);
  }

  get active(): Job | null {
    return this.current;
  }

  /** Runs the queued jobs one after another, unless that already happens. */
  start(): void {
    if (this.loop || this.signal.aborted || this.waiting.length === 0) return;
    this.loop = (async () => {
      try {
        while (this.waiting.length > 0 && !this.signal.aborted) {
          const job = this.waiting.shift()!;
          this.current = job;
          await this.handlers.run(job).catch((error: Error) => this.handlers.failed(job, error));
          this.current = null;
          this.handlers.done(job);
        }
      } finally {
        this.loop = null;
        this.current = null;
        if (this.waiting.length > 0 && !this.signal.aborted) this.start();
        else this.wakeIdle();
      }
    })();
  }

  /** Resolves when no job runs and none is queued. */
  idle(): Promise<void> {
    if (!this.loop && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops the queued jobs. */
  clear(): void {
    this.waiting.length = 0;
  }

  /** Resolves when the running job, if any, has ended. */
  async stopped(): Promise<void> {
    await this.loop?.catch(() => {});
  }

  wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
