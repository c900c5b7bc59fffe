// The life of a running server: the requests in flight, the drain close() makes (503 to new requests while the
// accepted ones are answered; those still running after the drain timeout are aborted), and the abort signal of
// each grounding request, which fires when its client goes away.
import type { FastifyReply } from 'fastify';

const abortError = (message: string) => Object.assign(new Error(message), { name: 'AbortError' });

export class Lifecycle {
  private drainingNow = false;
  /** Requests accepted before draining began, not yet answered. */
  private inFlightNow = 0;
  private drained: (() => void) | null = null;
  /** Aborts of the grounding requests running, for a drain that times out. */
  private readonly running = new Set<AbortController>();
  private closing: Promise<void> | null = null;

  get draining(): boolean {
    return this.drainingNow;
  }

  get inFlight(): number {
    return this.inFlightNow;
  }

  /** Counts a request that arrives before the drain began; `finished` once it is answered (or its client left). */
  accept(): { finished: () => void } {
    if (this.drainingNow) return { finished: () => {} };
    this.inFlightNow++;
    return {
      finished: () => {
        if (--this.inFlightNow === 0) this.drained?.();
      },
    };
  }

  /** An AbortSignal that fires when the client disconnects before its answer is sent; `done` once it is. */
  clientSignal(reply: FastifyReply): { signal: AbortSignal; done: () => void } {
    const controller = new AbortController();
    this.running.add(controller);
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) controller.abort(abortError('the client disconnected'));
    });
    return { signal: controller.signal, done: () => this.running.delete(controller) };
  }

  /** Drains, then calls `stop` (the app's close). Idempotent. */
  close(drainTimeout: number, stop: () => Promise<void>): Promise<void> {
    if (!this.closing) {
      this.drainingNow = true;
      this.closing = (async () => {
        if (this.inFlightNow > 0) {
          const done = new Promise<void>((resolve) => (this.drained = resolve));
          const timer = setTimeout(() => {
            for (const controller of this.running) controller.abort(abortError('the server stopped before the answer'));
          }, drainTimeout);
          await done;
          clearTimeout(timer);
        }
        await stop();
      })();
    }
    return this.closing;
  }
}
