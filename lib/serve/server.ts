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
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { AdapterInfo } from '../engine/model.js';
import type { Grounder, GroundResult } from '../grounding/grounder.js';
import { registerAccess, type AccessOptions } from './access.js';
import { AdapterRoots } from './adapter-roots.js';
import { ApiError, badRequest, toApiError } from './errors.js';
import { registerBodyLimits } from './limits.js';
import { ServeMetrics } from './metrics.js';
import { parseChatRequest, parseGroundRequest, type ChatCall, type RequestLimits } from './requests.js';
import { registerFeedbackRoutes, servedUser, type ServedPersonalizer } from './feedback-routes.js';

/** What the server needs of a Grounder. */
export type ServedGrounder = Pick<Grounder, 'ground' | 'addAdapter' | 'removeAdapter' | 'adapters' | 'modelName' | 'pending' | 'maxNewTokens'> & {
  readonly model?: { info(): Promise<{ device: string }> };
};

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

const OWNER = 'pigg';

function modelObject(id: string, created: number, parent: string | null): Record<string, unknown> {
  return { id, object: 'model', created, owned_by: OWNER, ...(parent ? { parent, root: parent } : { root: id }) };
}

/** An adapter as clients see it: its folder relative to an adapter root, never the server's own path. */
function adapterObject(info: AdapterInfo, roots: AdapterRoots): Record<string, unknown> {
  return { id: info.name, object: 'adapter', ...info, path: roots.show(info.path) };
}

/** The answer in the OpenAI chat.completion shape, with the grounding itself beside it. */
function grounding(result: GroundResult): Record<string, unknown> {
  const { x, y, grid, referring, parsed, adapter, seconds, tokens, promptTokens } = result;
  return { x, y, grid, referring, parsed, adapter, seconds, tokens, prompt_tokens: promptTokens };
}

function usage(result: GroundResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: result.promptTokens, completion_tokens: result.tokens, total_tokens: result.promptTokens + result.tokens };
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { grounder } = options;
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
  const drainTimeout = options.drainTimeout ?? 120_000;
  const metrics = options.metrics ?? new ServeMetrics();
  const device = options.device ?? (grounder.model ? (await grounder.model.info()).device : 'cpu');
  metrics.attach(grounder, device);
  const started = Math.floor(Date.now() / 1000);
  const adapterCreated = new Map<string, number>();

  let draining = false;
  /** Requests accepted before draining began, not yet answered. */
  let inFlight = 0;
  let drained: (() => void) | null = null;
  /** Aborts of the grounding requests running, for a drain that times out. */
  const running = new Set<AbortController>();

  const adapterRoots = new AdapterRoots(options.adapterRoots ?? []);

  const app = Fastify({
    bodyLimit,
    logger: options.logger ?? { level: 'error', stream: process.stderr },
    genReqId: () => `req_${randomUUID().replaceAll('-', '')}`,
    return503OnClosing: true,
  });
  registerBodyLimits(app, { bodyLimit, maxJsonDepth: options.maxJsonDepth });
  registerAccess(app, options.access ?? {}, host, options.onWarning);

  app.addHook('onRequest', async (request, reply) => {
    const begun = performance.now();
    reply.header('x-request-id', request.id);
    const counted = !draining;
    if (counted) inFlight++;
    reply.raw.once('close', () => {
      const route = request.routeOptions.url ?? 'unmatched';
      metrics.request(route, reply.raw.writableFinished ? reply.raw.statusCode : 499, (performance.now() - begun) / 1000);
      if (counted && --inFlight === 0) drained?.();
    });
    if (draining && request.url !== '/health' && request.url !== '/metrics') {
      reply.header('connection', 'close');
      throw new ApiError(503, 'shutting_down', 'the server is shutting down and takes no new requests', null, 'service_unavailable', { 'retry-after': String(retryAfter) });
    }
  });

  app.setErrorHandler((error, request, reply) => {
    if (reply.raw.destroyed || request.raw.socket?.destroyed) {
      // The client went away (its request was aborted): nobody to answer.
      reply.hijack();
      reply.raw.destroy();
      return;
    }
    const api = answerTo(error, request);
    for (const [k, v] of Object.entries(api.headers)) reply.header(k, v);
    void reply.code(api.status).send(api.body());
  });

  /** The API error to answer `error` with; one of the server's own is logged in full under the request's id. */
  function answerTo(error: unknown, request: FastifyRequest): ApiError {
    const api = toApiError(error, request.routeOptions.bodyLimit ?? bodyLimit, request.id);
    if (api.code === 'internal_error') request.log.error({ err: error }, 'internal error');
    return api;
  }

  app.setNotFoundHandler((request, reply) => {
    const api = new ApiError(404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`);
    void reply.code(404).send(api.body());
  });

  /** Sheds load before any work: 429 once the Grounder holds maxQueue requests. */
  const admit = (): void => {
    if (grounder.pending >= maxQueue) {
      throw new ApiError(429, 'queue_full', `the queue is full (${grounder.pending} requests queued or running, limit ${maxQueue}); retry after ${retryAfter} s`,
        null, 'rate_limit_error', { 'retry-after': String(retryAfter) });
    }
  };

  /** An AbortSignal that fires when the client disconnects before its answer is sent. */
  const clientSignal = (reply: FastifyReply): { signal: AbortSignal; done: () => void } => {
    const controller = new AbortController();
    running.add(controller);
    const onClose = () => {
      if (!reply.raw.writableFinished) controller.abort(Object.assign(new Error('the client disconnected'), { name: 'AbortError' }));
    };
    reply.raw.once('close', onClose);
    return {
      signal: controller.signal,
      done: () => {
        running.delete(controller);
      },
    };
  };

  const checkModel = (name: string | null): void => {
    if (name === null) return;
    const names = grounder.adapters().map((a) => a.name);
    if (!names.includes(name)) {
      throw new ApiError(404, 'model_not_found', `the model '${name}' does not exist: this server has the base model '${grounder.modelName}'`
        + (names.length ? ` and the adapters ${names.join(', ')}` : ' and no adapters'), 'model');
    }
  };

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/ready', async (_request, reply) => {
    try {
      const adapters = grounder.adapters().length; // a native call: the engine is alive
      if (draining) throw new Error('draining');
      return { status: 'ready', model: grounder.modelName, adapters, pending: grounder.pending };
    } catch (error) {
      const message = draining ? 'the server is shutting down' : `the engine is not available: ${(error as Error).message}`;
      return reply.code(503).send(new ApiError(503, 'not_ready', message).body());
    }
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.contentType);
    return metrics.text();
  });

  const models = () => [
    modelObject(grounder.modelName, started, null),
    ...grounder.adapters().map((a) => {
      if (!adapterCreated.has(a.name)) adapterCreated.set(a.name, Math.floor(Date.now() / 1000));
      return modelObject(a.name, adapterCreated.get(a.name)!, grounder.modelName);
    }),
  ];

  app.get('/v1/models', async () => ({ object: 'list', data: models() }));

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    const found = models().find((m) => m.id === request.params.id);
    if (!found) checkModel(request.params.id);
    return found;
  });

  app.get('/v1/adapters', async () => ({ object: 'list', data: grounder.adapters().map((a) => adapterObject(a, adapterRoots)) }));

  app.post('/v1/adapters', async (request, reply) => {
    const body = request.body as Record<string, unknown> | null;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('invalid_body', 'the request body must be a JSON object {name, path}');
    const { name, path } = body;
    if (typeof name !== 'string' || name === '') throw badRequest('invalid_name', 'name must be a non-empty string', 'name');
    if (!/^[\w.:@-]{1,128}$/.test(name)) throw badRequest('invalid_name', `name '${name}' may hold only letters, digits and _ . : @ - (at most 128)`, 'name');
    if (name === grounder.modelName) throw badRequest('invalid_name', `'${name}' is the base model's name; choose another adapter name`, 'name');
    if (options.personalizer?.knows(name)) {
      throw new ApiError(409, 'name_taken', `'${name}' is a feedback user's id (its adapter is trained and promoted from feedback); choose another adapter name`, 'name');
    }
    if (typeof path !== 'string' || path === '') throw badRequest('invalid_path', 'path must be the adapter folder on the server (adapter_config.json + adapter_model.safetensors)', 'path');
    const folder = adapterRoots.resolve(path);
    let info: AdapterInfo;
    try {
      info = await grounder.addAdapter(name, folder);
    } catch (error) {
      throw badRequest('invalid_adapter', `cannot load the adapter '${name}' from ${adapterRoots.show(folder)}: ${adapterRoots.redact((error as Error).message)}`, 'path');
    }
    adapterCreated.set(name, Math.floor(Date.now() / 1000));
    return reply.code(201).send(adapterObject(info, adapterRoots));
  });

  app.delete<{ Params: { name: string } }>('/v1/adapters/:name', async (request) => {
    const { name } = request.params;
    if (!grounder.removeAdapter(name)) checkModel(name);
    adapterCreated.delete(name);
    return { id: name, object: 'adapter', deleted: true };
  });

  if (options.personalizer) registerFeedbackRoutes(app, options.personalizer, limits);

  app.post('/v1/ground', async (request, reply) => {
    const call = parseGroundRequest(request.body, limits);
    call.user = servedUser(options.personalizer, call.user);
    admit();
    const client = clientSignal(reply);
    try {
      return await grounder.ground(call.image, call.instruction, { user: call.user, signal: client.signal, maxNewTokens: call.maxNewTokens });
    } finally {
      client.done();
    }
  });

  app.post('/v1/chat/completions', async (request, reply) => {
    const call = parseChatRequest(request.body, limits, grounder.modelName);
    call.user = servedUser(options.personalizer, call.user);
    checkModel(call.user);
    admit();
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const client = clientSignal(reply);
    try {
      if (!call.stream) {
        const result = await grounder.ground(call.image, call.instruction, { user: call.user, signal: client.signal, maxNewTokens: call.maxNewTokens, sampling: call.sampling });
        return {
          id, object: 'chat.completion', created, model: call.model, system_fingerprint: null,
          choices: [{ index: 0, message: { role: 'assistant', content: result.text, refusal: null }, logprobs: null, finish_reason: result.finishReason }],
          usage: usage(result),
          grounding: grounding(result),
        };
      }
      await streamChat(request, reply, call, id, created, client.signal);
      return reply;
    } finally {
      client.done();
    }
  });

  /**
   * SSE: chat.completion.chunk objects as the answer is decoded, then `data: [DONE]`. The headers go out with the
   * first piece of text, so a request that fails before (a bad image, an unknown adapter) still gets its 4xx.
   */
  async function streamChat(request: FastifyRequest, reply: FastifyReply, call: ChatCall, id: string, created: number, signal: AbortSignal): Promise<void> {
    const raw = reply.raw;
    let open = false;
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      ({ id, object: 'chat.completion.chunk', created, model: call.model, system_fingerprint: null, choices, ...extra });
    const send = (data: unknown) => {
      if (!raw.destroyed) raw.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    };
    const start = () => {
      if (open) return;
      open = true;
      reply.hijack();
      raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      send(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
    };
    const onText = (delta: string) => {
      start();
      send(chunk([{ index: 0, delta: { content: delta }, logprobs: null, finish_reason: null }]));
    };
    let result: GroundResult;
    try {
      result = await grounder.ground(call.image, call.instruction, { user: call.user, signal, maxNewTokens: call.maxNewTokens, sampling: call.sampling, onText });
    } catch (error) {
      if (!open) throw error;
      if (!raw.destroyed) {
        send(answerTo(error, request).body());
        raw.end();
      }
      return;
    }
    start();
    send(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: result.finishReason }], { grounding: grounding(result) }));
    if (call.includeUsage) send(chunk([], { usage: usage(result) }));
    send('[DONE]');
    raw.end();
  }

  await app.listen({ host, port: options.port ?? DEFAULT_PORT });
  const address = app.server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    if (!closing) {
      draining = true;
      closing = (async () => {
        if (inFlight > 0) {
          const done = new Promise<void>((resolve) => (drained = resolve));
          const timer = setTimeout(() => {
            for (const controller of running) controller.abort(Object.assign(new Error('the server stopped before the answer'), { name: 'AbortError' }));
          }, drainTimeout);
          await done;
          clearTimeout(timer);
        }
        await app.close();
      })();
    }
    return closing;
  };

  return {
    url: `http://${urlHost}:${address.port}`,
    host: address.address,
    port: address.port,
    app,
    metrics,
    get draining() {
      return draining;
    },
    get inFlight() {
      return inFlight;
    },
    close,
  };
}
