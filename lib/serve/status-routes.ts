// Liveness, readiness and Prometheus metrics: GET /health, /ready (503 while draining or when the engine does not
// answer) and /metrics.
import type { FastifyInstance } from 'fastify';
import { ApiError } from './errors.js';
import type { Lifecycle } from './lifecycle.js';
import type { ServeMetrics } from './metrics.js';
import type { ServedGrounder } from './served-grounder.js';

export function registerStatusRoutes(app: FastifyInstance, grounder: ServedGrounder, lifecycle: Lifecycle, metrics: ServeMetrics): void {
  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/ready', async (request, reply) => {
    try {
      const adapters = grounder.adapters().length; // a native call: the engine is alive
      if (lifecycle.draining) throw new Error('draining');
      return { status: 'ready', model: grounder.modelName, adapters, pending: grounder.pending };
    } catch (error) {
      if (lifecycle.draining) return reply.code(503).send(new ApiError(503, 'not_ready', 'the server is shutting down').body());
      // The engine's own message may name server files: it goes to the log, under the request's id.
      request.log.error({ err: error }, 'readiness: the engine did not answer');
      return reply.code(503).send(new ApiError(503, 'not_ready', `the engine is not available (request ${request.id}; the server's log has the details)`).body());
    }
  });

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.contentType);
    return metrics.text();
  });
}
