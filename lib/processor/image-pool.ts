// Image preprocessing on worker threads. Decoding, the Pillow-exact resize and the patch flattening of one
// 1080×2400 screenshot take about 70 ms of JavaScript, more than a GPU spends on a whole evaluation sample; a pool
// spreads the images over cores, and since the native model works off the JS thread, the images of the next
// batch are made while the model runs on this one. Results are those of processImage, bit for bit.
// Encoded bytes in shared memory (a Buffer over a SharedArrayBuffer, as pigg serve decodes request images) reach a
// worker without a copy; other byte sources are copied, never transferred: the caller keeps its bytes (the feedback
// store writes them to disk after the image was checked).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { processImage, type ImageProcessorOptions, type ProcessedImage } from './image.js';
import { workerUrl } from '../util/worker-url.js';

export interface ImageJob {
  id: number;
  source: string | Uint8Array;
  options: ImageProcessorOptions;
}

export type ImageReply = { id: number; image: ProcessedImage; error?: undefined } | { id: number; error: string; image?: undefined };

/** processImage's signature: what the sample builders call, on this thread or through a pool. */
export type ImageProcessor = (source: string | Uint8Array, options: ImageProcessorOptions) => Promise<ProcessedImage>;

/**
 * Workers by default: the cores but two (the JS thread and the native engine keep one each), at most 8; none on a
 * machine of two cores or fewer, where a worker only competes with them (measured in bench/pipeline.mjs).
 */
export function defaultImageWorkers(): number {
  return Math.max(0, Math.min(8, availableParallelism() - 2));
}

/** Jobs a worker holds at once: sharp decodes the next image on libuv's threads while the worker resizes this one. */
const JOBS_PER_WORKER = 2;

export class ImagePool {
  private readonly workers: Worker[] = [];
  /** One entry per free job slot. */
  private readonly idle: Worker[] = [];
  private readonly queue: Array<{ job: ImageJob; resolve: (image: ProcessedImage) => void; reject: (error: Error) => void }> = [];
  private readonly running = new Map<number, { worker: Worker; resolve: (image: ProcessedImage) => void; reject: (error: Error) => void }>();
  private nextId = 0;
  private closed = false;

  /** size 0 processes on the calling thread (still asynchronous, so batches can be made ahead). */
  constructor(readonly size = defaultImageWorkers()) {
    if (!Number.isInteger(size) || size < 0) throw new Error(`image workers must be a non-negative integer, got ${size}`);
    for (let i = 0; i < size; i++) {
      const worker = new Worker(workerUrl(import.meta.url, 'image-worker.js'));
      worker.unref();
      worker.on('message', (reply: ImageReply) => this.finish(worker, reply));
      worker.on('error', (error) => this.fail(worker, error));
      this.workers.push(worker);
      for (let slot = 0; slot < JOBS_PER_WORKER; slot++) this.idle.push(worker);
    }
  }

  readonly process: ImageProcessor = (source, options) => {
    if (this.closed) return Promise.reject(new Error('the image pool is closed'));
    if (this.size === 0) return processImage(source, options);
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { id: this.nextId++, source, options }, resolve, reject });
      this.dispatch();
    });
  };

  async close(): Promise<void> {
    this.closed = true;
    for (const { reject } of this.queue.splice(0)) reject(new Error('the image pool was closed'));
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const { job, resolve, reject } = this.queue.shift()!;
      this.running.set(job.id, { worker, resolve, reject });
      this.holdWhileBusy(worker);
      worker.postMessage(job);
    }
  }

  private finish(worker: Worker, reply: ImageReply): void {
    const task = this.running.get(reply.id);
    this.running.delete(reply.id);
    this.holdWhileBusy(worker);
    this.idle.push(worker);
    if (reply.error !== undefined) task?.reject(new Error(reply.error));
    else task?.resolve(reply.image);
    this.dispatch();
  }

  /** A worker keeps the process alive only while it has work. */
  private holdWhileBusy(worker: Worker): void {
    if ([...this.running.values()].some((task) => task.worker === worker)) worker.ref();
    else worker.unref();
  }

  /** A worker that died takes its job with it; the pool goes on with the others. */
  private fail(worker: Worker, error: Error): void {
    for (const [id, task] of this.running) {
      if (task.worker !== worker) continue;
      this.running.delete(id);
      task.reject(new Error(`image worker failed: ${error.message}`));
    }
    this.workers.splice(this.workers.indexOf(worker), 1);
    this.idle.splice(0, this.idle.length, ...this.idle.filter((w) => w !== worker));
    if (this.workers.length === 0) {
      for (const { reject } of this.queue.splice(0)) reject(new Error(`every image worker failed (last: ${error.message})`));
    }
  }
}
