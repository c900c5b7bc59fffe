// What a request body may be, checked while it is read and before it is parsed:
//
// - JSON only, sent as application/json: a `text/plain` POST is what a web page may send cross-origin without a CORS
//   preflight, so any other content type is refused (415) and such a page cannot reach the API.
// - Size per route: the routes that carry a screenshot take up to bodyLimit, every other route (adapters, rollback)
//   SMALL_BODY_LIMIT.
// - Nesting depth: a deeply nested body ([[[[...) is refused while it arrives, before JSON.parse recurses into it.
// - Large bodies (a screenshot in base64) are parsed on a worker thread, their images decoded there too: JSON.parse
//   of 25 MB holds an event loop ~0.2 s and the base64 decoding ~50 ms, and /health must answer meanwhile.
import { Transform } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { FastifyInstance } from 'fastify';
import { DecodedImageField, type Base64Read } from './base64-image.js';
import { badRequest } from './errors.js';
import { fieldHolder, type FieldPath } from './requests.js';
import { workerUrl } from '../util/worker-url.js';

/** Bytes of a body without an image. */
export const SMALL_BODY_LIMIT = 64 * 1024;
/** Nesting of a JSON body: a chat request is 5 deep. */
export const DEFAULT_MAX_JSON_DEPTH = 32;
/** The routes whose bodies carry an image. */
const IMAGE_ROUTES = new Set(['/v1/ground', '/v1/chat/completions', '/v1/feedback']);

/** Bodies from this size on are parsed on the worker. */
const OFF_THREAD_BYTES = 1 << 20;

/** A body for the worker (lib/serve/body-worker.ts), and the route it came to (which fields hold images). */
export interface BodyJob {
  id: number;
  bytes: Uint8Array;
  route: string;
}

/** An image field the worker decoded; its place in the value sent back holds null. */
export interface DecodedField extends Base64Read {
  path: FieldPath;
}

export type BodyReply = { id: number; value: unknown; images: DecodedField[]; error?: undefined } | { id: number; error: string };

/** JSON.parse and image decoding on a worker thread, one body at a time, the worker started on first use and let go on close. */
class BodyParser {
  private worker: Worker | null = null;
  private readonly waiting = new Map<number, (reply: BodyReply) => void>();
  private next = 0;

  parse(bytes: Buffer, route: string): Promise<unknown> {
    if (!this.worker) {
      this.worker = new Worker(workerUrl(import.meta.url, 'body-worker.js'));
      this.worker.on('message', (reply: BodyReply) => {
        this.waiting.get(reply.id)?.(reply);
        this.waiting.delete(reply.id);
        if (this.waiting.size === 0) this.worker?.unref();
      });
    }
    this.worker.ref();
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (reply) => {
        if (reply.error !== undefined) {
          reject(badRequest('invalid_json', `the request body is not valid JSON (${reply.error})`));
          return;
        }
        // Only the worker's list marks decoded fields: no JSON body can pass for one.
        for (const { path, bytes: image, size, fault } of reply.images) {
          const { holder, key } = fieldHolder(reply.value, path);
          holder[key] = new DecodedImageField(image, size, fault);
        }
        resolve(reply.value);
      });
      // A body that owns its whole ArrayBuffer moves to the worker: copying 25 MB holds the event loop ~70 ms.
      const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
      this.worker!.postMessage({ id, bytes, route } satisfies BodyJob, owned ? [bytes.buffer as ArrayBuffer] : []);
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = null;
  }
}

/**
 * Follows the nesting of JSON as its bytes arrive (strings and escapes skipped; UTF-8 continuation bytes never look
 * like the ASCII it looks for), so a body nested too deep is refused at its first chunk, not after megabytes were
 * read, joined and scanned on the event loop.
 */
export class JsonDepth {
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(readonly max: number) {}

  /** Takes the next bytes; false once the nesting went deeper than max. */
  scan(bytes: Uint8Array): boolean {
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c) this.escaped = true;
        else if (c === 0x22) this.inString = false;
      } else if (c === 0x22) {
        this.inString = true;
      } else if (c === 0x7b || c === 0x5b) {
        if (++this.depth > this.max) return false;
      } else if (c === 0x7d || c === 0x5d) {
        this.depth--;
      }
    }
    return true;
  }
}

/** Installs the body rules on `app`; call before its routes are added (the size limits are set per route). */
export function registerBodyLimits(app: FastifyInstance, options: { bodyLimit: number; maxJsonDepth?: number }): void {
  const maxDepth = options.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const parse = app.getDefaultJsonParser('error', 'error');
  const large = new BodyParser();
  app.addHook('onClose', () => large.close());
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    if (body.byteLength < OFF_THREAD_BYTES) {
      parse(request, body.toString('utf8'), done);
      return;
    }
    large.parse(body, request.routeOptions.url ?? '').then((value) => done(null, value), (error: Error) => done(error, undefined));
  });
  app.addHook('preParsing', async (_request, _reply, payload) => {
    const depth = new JsonDepth(maxDepth);
    const guarded = payload.pipe(new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (depth.scan(chunk)) done(null, chunk);
        else done(badRequest('invalid_json', `the request body nests deeper than ${maxDepth} levels`));
      },
    }));
    // fastify checks the bytes received against Content-Length on the stream it parses.
    return Object.assign(guarded, { receivedEncodedLength: (payload as { receivedEncodedLength?: number }).receivedEncodedLength });
  });
  app.addHook('onRoute', (route) => {
    route.bodyLimit ??= IMAGE_ROUTES.has(route.url) ? options.bodyLimit : Math.min(options.bodyLimit, SMALL_BODY_LIMIT);
  });
}
