// What a request body may be, checked while it is read and before it is parsed:
//
// - JSON only, sent as application/json: a `text/plain` POST is what a web page may send cross-origin without a CORS
//   preflight, so any other content type is refused (415) and such a page cannot reach the API.
// - Size per route: the routes that carry a screenshot take up to bodyLimit, every other route (adapters, rollback)
//   SMALL_BODY_LIMIT.
// - Nesting depth: a deeply nested body ([[[[...) is refused by a linear scan before JSON.parse recurses into it.
import type { FastifyInstance } from 'fastify';
import { badRequest } from './errors.js';

/** Bytes of a body without an image. */
export const SMALL_BODY_LIMIT = 64 * 1024;
/** Nesting of a JSON body: a chat request is 5 deep. */
export const DEFAULT_MAX_JSON_DEPTH = 32;
/** The routes whose bodies carry an image. */
const IMAGE_ROUTES = new Set(['/v1/ground', '/v1/chat/completions', '/v1/feedback']);

/** Whether JSON text nests objects and arrays deeper than `max` (strings skipped, escapes included). */
export function nestsDeeper(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

/** Installs the body rules on `app`; call before its routes are added (the size limits are set per route). */
export function registerBodyLimits(app: FastifyInstance, options: { bodyLimit: number; maxJsonDepth?: number }): void {
  const maxDepth = options.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (nestsDeeper(body as string, maxDepth)) {
      done(badRequest('invalid_json', `the request body nests deeper than ${maxDepth} levels`), undefined);
      return;
    }
    parse(request, body as string, done);
  });
  app.addHook('onRoute', (route) => {
    route.bodyLimit ??= IMAGE_ROUTES.has(route.url) ? options.bodyLimit : Math.min(options.bodyLimit, SMALL_BODY_LIMIT);
  });
}
