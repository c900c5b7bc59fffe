// Grounding: pigg's own POST /v1/ground and OpenAI's POST /v1/chat/completions (plain, and SSE with `stream: true`).
// A request is shed with 429 (Retry-After) once the Grounder holds maxQueue requests, and aborted when its client
// goes away.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GroundResult } from '../grounding/grounder.js';
import type { AnswerTo } from './app.js';
import { ApiError } from './errors.js';
import { servedUser, type ServedPersonalizer } from './feedback-routes.js';
import type { Lifecycle } from './lifecycle.js';
import { checkModel } from './model-routes.js';
import { parseChatRequest, parseGroundRequest, type ChatCall, type RequestLimits } from './requests.js';
import type { ServedGrounder } from './served-grounder.js';

export interface GroundRouteSettings {
  grounder: ServedGrounder;
  personalizer?: ServedPersonalizer;
  limits: RequestLimits;
  /** Requests queued or running at which new ones get 429. */
  maxQueue: number;
  /** Seconds a 429 tells the client to wait. */
  retryAfter: number;
  lifecycle: Lifecycle;
  answerTo: AnswerTo;
}

/** The answer in the OpenAI chat.completion shape, with the grounding itself beside it. */
function grounding(result: GroundResult): Record<string, unknown> {
  const { x, y, grid, referring, parsed, adapter, seconds, tokens, promptTokens } = result;
  return { x, y, grid, referring, parsed, adapter, seconds, tokens, prompt_tokens: promptTokens };
}

function usage(result: GroundResult): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: result.promptTokens, completion_tokens: result.tokens, total_tokens: result.promptTokens + result.tokens };
}

export function registerGroundRoutes(app: FastifyInstance, settings: GroundRouteSettings): void {
  const { grounder, personalizer, limits, maxQueue, retryAfter, lifecycle, answerTo } = settings;

  /** Sheds load before any work: 429 once the Grounder holds maxQueue requests. */
  const admit = (): void => {
    if (grounder.pending >= maxQueue) {
      throw new ApiError(429, 'queue_full', `the queue is full (${grounder.pending} requests queued or running, limit ${maxQueue}); retry after ${retryAfter} s`,
        null, 'rate_limit_error', { 'retry-after': String(retryAfter) });
    }
  };

  app.post('/v1/ground', async (request, reply) => {
    const call = parseGroundRequest(request.body, limits);
    call.user = servedUser(personalizer, call.user);
    admit();
    const client = lifecycle.clientSignal(reply);
    try {
      return await grounder.ground(call.image, call.instruction, { user: call.user, signal: client.signal, maxNewTokens: call.maxNewTokens });
    } finally {
      client.done();
    }
  });

  app.post('/v1/chat/completions', async (request, reply) => {
    const call = parseChatRequest(request.body, limits, grounder.modelName);
    call.user = servedUser(personalizer, call.user);
    checkModel(grounder, call.user);
    admit();
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const client = lifecycle.clientSignal(reply);
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
}
