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
import { errorCodes, type FastifyInstance } from 'fastify';
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

/**
 * What the worker (lib/serve/body-worker.ts) is sent: a body's bytes as they arrive, then its end (with the route it
 * came to, which says where its images are), or its drop (the request failed or went away).
 */
export type BodyMessage = { id: number; kind: 'chunk'; bytes: Uint8Array } | { id: number; kind: 'end'; route: string } | { id: number; kind: 'drop' };

/** An image field the worker decoded; its place in the value sent back holds null. */
export interface DecodedField extends Base64Read {
  path: FieldPath;
}

export type BodyReply = { id: number; value: unknown; images: DecodedField[]; error?: undefined } | { id: number; error: string };

/** A body on its way to the worker. */
interface BodyUpload {
  send(chunk: Buffer): void;
  /** The parsed body, its decoded image fields in place. */
  end(): Promise<unknown>;
  /** Lets go of a body that will not end (nothing once end() was called). */
  drop(): void;
}

/**
 * Large bodies read, parsed and their images decoded on a worker thread: the bytes go there as they arrive, so
 * the event loop never joins megabytes either. The worker starts on first use and is let go on close. A worker that
 * dies (out of memory, say) fails the bodies it held, each with a 500, and the next body starts a new one.
 */
export class OffThreadBodies {
  private worker: Worker | null = null;
  /** The bodies on the worker now, each with how it fails if the worker dies. */
  private readonly open = new Map<number, (error: Error) => void>();
  private readonly waiting = new Map<number, (reply: BodyReply) => void>();
  private next = 0;

  constructor(private readonly script: URL = workerUrl(import.meta.url, 'body-worker.js')) {}

  start(route: string): BodyUpload {
    const worker = this.started();
    const id = this.next++;
    let ended = false;
    let lost: Error | null = null; // the worker died with this body on it
    let rejectEnd: ((error: Error) => void) | null = null;
    this.open.set(id, (error) => {
      lost = error;
      rejectEnd?.(error);
    });
    worker.ref();
    const post = (message: BodyMessage, transfer: ArrayBuffer[] = []) => {
      if (!lost) worker.postMessage(message, transfer);
    };
    const settle = () => {
      this.open.delete(id);
      this.waiting.delete(id);
      if (this.open.size === 0) worker.unref();
    };
    return {
      send: (chunk) => {
        // A chunk may be a view of a larger buffer, which postMessage would copy whole: its own bytes move instead.
        const bytes = new Uint8Array(chunk);
        post({ id, kind: 'chunk', bytes }, [bytes.buffer]);
      },
      drop: () => {
        if (ended) return; // all of it arrived: the answer comes
        ended = true;
        post({ id, kind: 'drop' });
        settle();
      },
      end: () => new Promise((resolve, reject) => {
        ended = true;
        if (lost) {
          settle();
          reject(lost);
          return;
        }
        rejectEnd = (error) => {
          settle();
          reject(error);
        };
        this.waiting.set(id, (reply) => {
          settle();
          if (reply.error !== undefined) {
            reject(badRequest('invalid_json', `the request body is not valid JSON (${reply.error})`));
            return;
          }
          // Only the worker's list marks decoded fields: no JSON body can pass for one.
          for (const { path, bytes, size, fault } of reply.images) {
            const { holder, key } = fieldHolder(reply.value, path);
            holder[key] = new DecodedImageField(bytes, size, fault);
          }
          resolve(reply.value);
        });
        post({ id, kind: 'end', route });
      }),
    };
  }

  private started(): Worker {
    if (!this.worker) {
      const worker = new Worker(this.script);
      worker.unref();
      worker.on('message', (reply: BodyReply) => this.waiting.get(reply.id)?.(reply));
      const died = (cause: string) => {
        if (this.worker !== worker) return; // closed, or already replaced
        this.worker = null;
        const error = new Error(`the body parser's worker thread stopped (${cause})`);
        for (const fail of [...this.open.values()]) fail(error);
      };
      worker.on('error', (error) => died(error.message));
      worker.on('exit', (code) => died(`exit code ${code}`));
      this.worker = worker;
    }
    return this.worker;
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    await worker?.terminate();
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
  const large = new OffThreadBodies();
  app.addHook('onClose', () => large.close());
  app.removeAllContentTypeParsers();
  // fastify's own reading (parseAs) joins the chunks on the event loop (a 25 MB body: one stall of tens of ms); this
  // reads as it does, with its limits and errors, and hands a large body to the worker chunk by chunk.
  app.addContentTypeParser('application/json', (request, payload, done) => {
    const limit = request.routeOptions.bodyLimit ?? options.bodyLimit;
    const declared = Number(request.headers['content-length']);
    if (declared > limit) {
      done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    let upload: BodyUpload | null = null;
    const detach = () => {
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      payload.removeListener('error', onEnd);
    };
    const fail = (error: Error) => {
      detach();
      upload?.drop();
      done(error, undefined);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limit) {
        fail(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE());
        return;
      }
      if (upload) {
        upload.send(chunk);
        return;
      }
      chunks.push(chunk);
      if (received < OFF_THREAD_BYTES) return;
      upload = large.start(request.routeOptions.url ?? '');
      for (const early of chunks.splice(0)) upload.send(early);
    };
    const onEnd = (error?: Error & { statusCode?: number }) => {
      if (error) {
        if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400;
        fail(error);
        return;
      }
      if (!Number.isNaN(declared) && ((payload as { receivedEncodedLength?: number }).receivedEncodedLength || received) !== declared) {
        fail(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH());
        return;
      }
      detach();
      if (upload) upload.end().then((value) => done(null, value), (failure: Error) => done(failure, undefined));
      else parse(request, Buffer.concat(chunks, received).toString('utf8'), done);
    };
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onEnd);
    // A client that goes away mid-body: the worker lets go of what it holds.
    request.raw.once('close', () => upload?.drop());
    payload.resume();
  });
  app.addHook('preParsing', async (_request, _reply, payload) => {
    const depth = new JsonDepth(maxDepth);
    const guarded = payload.pipe(new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (depth.scan(chunk)) done(null, chunk);
        else done(badRequest('invalid_json', `the request body nests deeper than ${maxDepth} levels`));
      },
    }));
    // The parser above checks the bytes received against Content-Length on the stream it reads, as fastify does.
    return Object.assign(guarded, { receivedEncodedLength: (payload as { receivedEncodedLength?: number }).receivedEncodedLength });
  });
  app.addHook('onRoute', (route) => {
    route.bodyLimit ??= IMAGE_ROUTES.has(route.url) ? options.bodyLimit : Math.min(options.bodyLimit, SMALL_BODY_LIMIT);
  });
}
