// Errors of the HTTP API, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, one precise message
// each, and the HTTP status that goes with it. Grounder errors (by their code) and fastify's own (bad JSON, body
// too large) map onto the same shape.

export type ApiErrorType = 'invalid_request_error' | 'not_found_error' | 'rate_limit_error' | 'server_error' | 'service_unavailable';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly type: ApiErrorType = status === 404 ? 'not_found_error' : status === 429 ? 'rate_limit_error' : status === 503 ? 'service_unavailable' : status >= 500 ? 'server_error' : 'invalid_request_error',
    /** Extra response headers (Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (code: string, message: string, param: string | null = null) => new ApiError(400, code, message, param);

/** fastify's errors (FST_ERR_*) that carry a client status: keep the status, say it in the API's shape. */
const FASTIFY_CODES: Record<string, { code: string; message?: (error: Error) => string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'invalid_json' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'invalid_json', message: () => 'the request body is empty; send a JSON object' },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'body_too_large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'unsupported_media_type', message: (e) => `${e.message}: send the body as JSON with Content-Type: application/json` },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'invalid_content_length' },
};

/**
 * Any error a handler or fastify throws, as the API error to answer with. One the client did not cause is a 500
 * that says nothing of the server's inside (an engine message may name files, devices, memory): it names the
 * request, whose id the server's log has the error under.
 */
export function toApiError(error: unknown, bodyLimit: number, requestId: string): ApiError {
  if (error instanceof ApiError) return error;
  const e = error as Error & { code?: string; statusCode?: number };
  switch (e?.code) {
    case 'UNKNOWN_ADAPTER':
      return new ApiError(404, 'model_not_found', e.message, 'model');
    case 'INVALID_IMAGE':
      return new ApiError(400, 'invalid_image', e.message, 'image');
    case 'INVALID_ARGUMENT':
      return new ApiError(400, 'invalid_argument', e.message, (e as { param?: string }).param ?? null);
    case 'GROUNDER_DISPOSED':
      return new ApiError(503, 'shutting_down', 'the server is shutting down');
    default:
      break;
  }
  const known = e?.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) {
    const status = e.statusCode ?? 400;
    if (known.code === 'body_too_large') return new ApiError(413, known.code, `the request body is over the limit of ${bodyLimit} bytes`);
    if (known.code === 'invalid_json' && !known.message) return new ApiError(status, known.code, `the request body is not valid JSON (${e.message})`);
    return new ApiError(status, known.code, known.message ? known.message(e) : e.message);
  }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new ApiError(e.statusCode, String(e.code ?? 'invalid_request').toLowerCase(), e.message);
  }
  return new ApiError(500, 'internal_error', `internal error in request ${requestId}; the server's log has the details`);
}
