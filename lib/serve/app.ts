// The fastify app every route is added to: the body rules (lib/serve/limits.ts), keys and Host (access.ts), request
// ids, the count of requests for metrics and the drain, and errors answered in OpenAI's shape (errors.ts), a 500
// logged in full under its request id.
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { registerAccess, type AccessOptions } from './access.js';
import { ApiError, toApiError } from './errors.js';
import type { Lifecycle } from './lifecycle.js';
import { registerBodyLimits } from './limits.js';
import type { ServeMetrics } from './metrics.js';

export interface AppSettings {
  bodyLimit: number;
  maxJsonDepth?: number;
  host: string;
  access: AccessOptions;
  onWarning?: (message: string) => void;
  logger?: FastifyServerOptions['logger'];
  /** Seconds a 503 while draining tells the client to wait. */
  retryAfter: number;
}

/** The API error to answer an error with; one of the server's own is logged in full under the request's id. */
export type AnswerTo = (error: unknown, request: FastifyRequest) => ApiError;

export function createApp(settings: AppSettings, lifecycle: Lifecycle, metrics: ServeMetrics): { app: FastifyInstance; answerTo: AnswerTo } {
  const app = Fastify({
    bodyLimit: settings.bodyLimit,
    logger: settings.logger ?? { level: 'error', stream: process.stderr },
    genReqId: () => `req_${randomUUID().replaceAll('-', '')}`,
    return503OnClosing: true,
  });
  registerBodyLimits(app, { bodyLimit: settings.bodyLimit, maxJsonDepth: settings.maxJsonDepth });
  registerAccess(app, settings.access, settings.host, settings.onWarning);

  const answerTo: AnswerTo = (error, request) => {
    const api = toApiError(error, request.routeOptions.bodyLimit ?? settings.bodyLimit, request.id);
    if (api.code === 'internal_error') request.log.error({ err: error }, 'internal error');
    return api;
  };

  app.addHook('onRequest', async (request, reply) => {
    const begun = performance.now();
    reply.header('x-request-id', request.id);
    const accepted = lifecycle.accept();
    reply.raw.once('close', () => {
      const route = request.routeOptions.url ?? 'unmatched';
      metrics.request(route, reply.raw.writableFinished ? reply.raw.statusCode : 499, (performance.now() - begun) / 1000);
      accepted.finished();
    });
    if (lifecycle.draining && request.url !== '/health' && request.url !== '/metrics') {
      reply.header('connection', 'close');
      throw new ApiError(503, 'shutting_down', 'the server is shutting down and takes no new requests', null, 'service_unavailable', { 'retry-after': String(settings.retryAfter) });
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

  app.setNotFoundHandler((request, reply) => {
    const api = new ApiError(404, 'not_found', `no route ${request.method} ${request.url.split('?')[0]}`);
    void reply.code(404).send(api.body());
  });

  return { app, answerTo };
}
