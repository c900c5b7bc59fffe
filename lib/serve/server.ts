// The HTTP face of a Grounder (fastify): pigg's own grounding route, an OpenAI-compatible chat completions route
// (non-streaming and SSE), the model and adapter lists, health, readiness and Prometheus metrics.
//
//   const server = await startServer({ grounder, port: 8080 });   // server.url: http://127.0.0.1:8080
//   ...
//   await server.close();   // drains: answers what it accepted, 503 to anything new, then stops listening
//
// Batching is the Grounder's (concurrent ground() calls join one generate call); the server bounds its queue
// (429 with Retry-After once grounder.pending reaches maxQueue) and aborts the request of a client that goes away.
// The Grounder stays the caller's: close() leaves it loaded.
//
// The parts: app.ts (the fastify app, its hooks and error answers), status-routes.ts (health, readiness, metrics),
// model-routes.ts (models and adapters), feedback-routes.ts, ground-routes.ts (grounding and chat completions),
// lifecycle.ts (requests in flight, the drain, client aborts); this file sets the defaults and starts them.
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { AccessOptions } from './access.js';
import { AdapterRoots } from './adapter-roots.js';
import { createApp } from './app.js';
import { registerFeedbackRoutes, type ServedPersonalizer } from './feedback-routes.js';
import { registerGroundRoutes } from './ground-routes.js';
import { Lifecycle } from './lifecycle.js';
import { ServeMetrics } from './metrics.js';
import { registerModelRoutes } from './model-routes.js';
import type { RequestLimits } from './requests.js';
import type { ServedGrounder } from './served-grounder.js';
import { registerStatusRoutes } from './status-routes.js';

export type { ServedGrounder };

export const DEFAULT_PORT = 8080;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_MAX_QUEUE = 64;
/** Decoded image bytes: a 4K PNG screenshot is ~10 MB. */
export const DEFAULT_MAX_IMAGE_BYTES = 20 * 2 ** 20;
export const DEFAULT_MAX_INSTRUCTION_LENGTH = 2000;

export interface ServerOptions {
  grounder: ServedGrounder;
  /**
   * Learning from feedback (lib/personalize): POST /v1/feedback, GET /v1/users/:id, POST /v1/users/:id/rollback;
   * a user it knows that has no adapter yet is answered by the base model.
   */
  personalizer?: ServedPersonalizer;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port (see `port` of the result). */
  port?: number;
  /** Grounding requests queued or running (grounder.pending) at which new ones get 429 (default 64). */
  maxQueue?: number;
  /** Bytes of a decoded image; more is 413 (default 20 MiB). */
  maxImageBytes?: number;
  /** Bytes of a request body; more is 413 (default: what a maxImageBytes image takes in base64, plus 1 MiB). */
  bodyLimit?: number;
  /** Characters of an instruction; more is 400 (default 2000). */
  maxInstructionLength?: number;
  /** Seconds a 429 tells the client to wait (Retry-After; default 1). */
  retryAfter?: number;
  /** The metrics to serve on /metrics; pass the one whose onBatch the Grounder reports to (see lib/serve/serve.ts). */
  metrics?: ServeMetrics;
  /** close() aborts the requests still running after this many ms of draining (default 120000). */
  drainTimeout?: number;
  /** The device the model is on, for the device-memory gauge (default: grounder.model.info().device). */
  device?: string;
  /** API keys, admin keys and the Host allow-list (lib/serve/access.ts); default none: open, for loopback. */
  access?: AccessOptions;
  /** Folders POST /v1/adapters may load from (default none: loading at run time is off). */
  adapterRoots?: readonly string[];
  /** Nesting depth of a JSON body (default 32). */
  maxJsonDepth?: number;
  /** Where the warning about a server open to the network goes (default process.emitWarning). */
  onWarning?: (message: string) => void;
  /**
   * fastify's logger (pino options such as {level, stream}); default errors only, to stderr. A 500 is logged there in
   * full under its request id (the answer carries the id, not the error).
   */
  logger?: FastifyServerOptions['logger'];
}

export interface RunningServer {
  /** http://host:port */
  url: string;
  host: string;
  port: number;
  app: FastifyInstance;
  metrics: ServeMetrics;
  /** True once close() was called: new requests get 503. */
  readonly draining: boolean;
  /** Requests accepted and not yet answered. */
  readonly inFlight: number;
  /** Drains (answers the requests accepted, 503 to new ones), then stops listening. Idempotent. */
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { grounder, personalizer } = options;
  const host = options.host ?? DEFAULT_HOST;
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  if (!Number.isInteger(maxQueue) || maxQueue < 1) throw new Error(`maxQueue must be a positive integer, got ${maxQueue}`);
  const limits: RequestLimits = {
    maxImageBytes: options.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES,
    maxInstructionLength: options.maxInstructionLength ?? DEFAULT_MAX_INSTRUCTION_LENGTH,
    maxNewTokens: grounder.maxNewTokens,
  };
  const bodyLimit = options.bodyLimit ?? Math.ceil((limits.maxImageBytes * 4) / 3) + 2 ** 20;
  const retryAfter = options.retryAfter ?? 1;
  const metrics = options.metrics ?? new ServeMetrics();
  const device = options.device ?? (grounder.model ? (await grounder.model.info()).device : 'cpu');
  metrics.attach(grounder, device);
  const adapterRoots = new AdapterRoots(options.adapterRoots ?? []);
  const lifecycle = new Lifecycle();

  const { app, answerTo } = createApp({
    bodyLimit, maxJsonDepth: options.maxJsonDepth, host, access: options.access ?? {}, onWarning: options.onWarning, logger: options.logger, retryAfter,
  }, lifecycle, metrics);
  registerStatusRoutes(app, grounder, lifecycle, metrics);
  registerModelRoutes(app, grounder, adapterRoots, personalizer);
  if (personalizer) registerFeedbackRoutes(app, personalizer, limits);
  registerGroundRoutes(app, { grounder, personalizer, limits, maxQueue, retryAfter, lifecycle, answerTo });

  await app.listen({ host, port: options.port ?? DEFAULT_PORT });
  const address = app.server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const drainTimeout = options.drainTimeout ?? 120_000;
  return {
    url: `http://${urlHost}:${address.port}`,
    host: address.address,
    port: address.port,
    app,
    metrics,
    get draining() {
      return lifecycle.draining;
    },
    get inFlight() {
      return lifecycle.inFlight;
    },
    close: () => lifecycle.close(drainTimeout, () => app.close()),
  };
}
