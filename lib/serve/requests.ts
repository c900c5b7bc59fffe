// Request bodies of the HTTP API, checked into what Grounder.ground() takes: the image's bytes (base64 or a data
// URI, within a decoded-size limit), the instruction (within a length limit), the adapter, the token budget and
// (chat completions) OpenAI's sampling fields. Every failure is an ApiError with one message naming the field.
import { randomInt } from 'node:crypto';
import type { SamplingOptions } from '../engine/sampling.js';
import { DecodedImageField, readBase64Image } from './base64-image.js';
import { ApiError, badRequest } from './errors.js';
import { isObject } from '../util/json.js';

export interface RequestLimits {
  /** Bytes of a decoded image. */
  maxImageBytes: number;
  /** Characters of an instruction. */
  maxInstructionLength: number;
  /** The largest token budget a request may ask for (the Grounder's). */
  maxNewTokens: number;
}

export interface GroundCall {
  image: Buffer;
  instruction: string;
  /** The adapter's name; null = the base model. */
  user: string | null;
  maxNewTokens?: number;
}

export interface ChatCall extends GroundCall {
  /** The `model` the client named (echoed in the response). */
  model: string;
  stream: boolean;
  includeUsage: boolean;
  /** From temperature / top_p / seed: null = greedy; absent when the request sets neither temperature nor top_p. */
  sampling?: SamplingOptions | null;
}

/**
 * The bytes of an image given as base64 or as a `data:<type>;base64,<data>` URI (or already decoded by the JSON
 * parse worker), as a Buffer over shared memory.
 */
export function base64ImageBytes(value: unknown, param: string, maxBytes: number): Buffer {
  if (value === undefined || value === null || value === '') throw badRequest('missing_image', `no image: send ${param} as base64 or a data URI (data:image/png;base64,...)`, param);
  if (typeof value !== 'string' && !(value instanceof DecodedImageField)) {
    throw badRequest('invalid_image', `${param} must be a string (base64 or a data URI), got ${Array.isArray(value) ? 'an array' : typeof value}`, param);
  }
  const read = typeof value === 'string' ? readBase64Image(value, maxBytes) : value;
  if (read.fault === 'data_uri_without_base64') {
    throw badRequest('invalid_image', `${param} is a data URI without ';base64,' data; send the image base64-encoded (data:image/png;base64,...)`, param);
  }
  if (read.fault === 'url') {
    throw badRequest('invalid_image', `${param} is a URL; this server does not fetch images: send the image itself as a data URI (data:image/png;base64,...)`, param);
  }
  if (read.fault === 'empty') throw badRequest('missing_image', `no image: ${param} holds no data`, param);
  if (read.size > maxBytes) throw new ApiError(413, 'image_too_large', `the image is ${read.size} bytes, over the limit of ${maxBytes} bytes`, param);
  if (read.fault === 'invalid' || !read.bytes) throw badRequest('invalid_image', `${param} is not valid base64`, param);
  return Buffer.from(read.bytes.buffer, read.bytes.byteOffset, read.bytes.byteLength);
}

function instructionOf(value: unknown, param: string, limits: RequestLimits): string {
  if (value === undefined || value === null) throw badRequest('missing_instruction', `no instruction: send ${param} as a non-empty string`, param);
  if (typeof value !== 'string') throw badRequest('invalid_instruction', `${param} must be a string, got ${typeof value}`, param);
  if (value.trim() === '') throw badRequest('missing_instruction', `the instruction (${param}) is empty`, param);
  if (value.length > limits.maxInstructionLength) {
    throw badRequest('instruction_too_long', `the instruction is ${value.length} characters, over the limit of ${limits.maxInstructionLength}`, param);
  }
  return value;
}

function tokensOf(value: unknown, param: string, limits: RequestLimits): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw badRequest('invalid_max_tokens', `${param} must be a positive integer, got ${JSON.stringify(value)}`, param);
  if (value > limits.maxNewTokens) {
    throw badRequest('invalid_max_tokens', `${param} ${value} is over this server's limit of ${limits.maxNewTokens} new tokens`, param);
  }
  return value;
}

/**
 * OpenAI's temperature (0-2, default 1 when top_p is set), top_p (0-1] and seed. Neither temperature nor top_p: the
 * server's decoding (undefined). Temperature 0: greedy. Sampling without a seed gets a random one.
 */
function samplingOf(b: Record<string, unknown>): SamplingOptions | null | undefined {
  const given = (key: string) => b[key] !== undefined && b[key] !== null;
  const number = (key: string, ok: (v: number) => boolean, rule: string): number | undefined => {
    if (!given(key)) return undefined;
    const value = b[key];
    if (typeof value !== 'number' || !ok(value)) throw badRequest(`invalid_${key}`, `${key} must be ${rule}, got ${JSON.stringify(value)}`, key);
    return value;
  };
  const temperature = number('temperature', (v) => v >= 0 && v <= 2, 'a number from 0 to 2');
  const topP = number('top_p', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  const seed = number('seed', (v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer');
  if (temperature === undefined && topP === undefined) return undefined;
  if (temperature === 0) return null;
  return { temperature: temperature ?? 1, topP: topP ?? 1, seed: seed ?? randomInt(2 ** 47) };
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw badRequest('invalid_body', `the request body must be a JSON object, got ${body === null ? 'null' : Array.isArray(body) ? 'an array' : typeof body}`);
  return body;
}

/** POST /v1/ground: {image, instruction, user?, max_new_tokens?}. */
export function parseGroundRequest(body: unknown, limits: RequestLimits): GroundCall {
  const b = bodyObject(body);
  const instruction = instructionOf(b.instruction, 'instruction', limits);
  if (b.user !== undefined && b.user !== null && (typeof b.user !== 'string' || b.user === '')) {
    throw badRequest('invalid_user', 'user must be a non-empty string (an adapter name) or null', 'user');
  }
  const maxNewTokens = tokensOf(b.max_new_tokens, 'max_new_tokens', limits);
  const image = base64ImageBytes(b.image, 'image', limits.maxImageBytes);
  return { image, instruction, user: (b.user as string | undefined) ?? null, maxNewTokens };
}

interface ContentPart {
  type?: unknown;
  text?: unknown;
  image_url?: unknown;
}

/**
 * POST /v1/chat/completions: `model` names an adapter (or the base model), the instruction is the text of the last
 * user message and the image its image_url part (or, failing that, the latest image of an earlier user message).
 */
export function parseChatRequest(body: unknown, limits: RequestLimits, baseModel: string): ChatCall {
  const b = bodyObject(body);
  if (b.model !== undefined && typeof b.model !== 'string') throw badRequest('invalid_model', 'model must be a string: an adapter name or the base model\'s name', 'model');
  const model = (b.model as string | undefined) ?? baseModel;
  if (!Array.isArray(b.messages) || b.messages.length === 0) throw badRequest('missing_messages', 'messages must be a non-empty array', 'messages');
  if (b.n !== undefined && b.n !== null && b.n !== 1) throw badRequest('invalid_n', 'n must be 1: this server answers with one choice', 'n');
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw badRequest('invalid_stream', 'stream must be a boolean', 'stream');
  const messages = b.messages as unknown[];
  messages.forEach((m, i) => {
    if (!isObject(m) || typeof m.role !== 'string') throw badRequest('invalid_message', `messages[${i}] must be an object with a role`, `messages[${i}]`);
  });
  const userIndexes = messages.flatMap((m, i) => ((m as { role: string }).role === 'user' ? [i] : []));
  if (userIndexes.length === 0) throw badRequest('missing_instruction', 'no user message: the instruction is the text of the last user message', 'messages');

  const parts = (index: number): ContentPart[] => {
    const content = (messages[index] as { content?: unknown }).content;
    if (typeof content === 'string') return [{ type: 'text', text: content }];
    if (!Array.isArray(content)) throw badRequest('invalid_message', `messages[${index}].content must be a string or an array of content parts`, `messages[${index}].content`);
    return content.map((part, j) => {
      if (!isObject(part)) throw badRequest('invalid_message', `messages[${index}].content[${j}] must be an object`, `messages[${index}].content[${j}]`);
      return part as ContentPart;
    });
  };

  const last = userIndexes.at(-1)!;
  const texts = parts(last).flatMap((p, j) => {
    if (p.type !== 'text') return [];
    if (typeof p.text !== 'string') throw badRequest('invalid_message', `messages[${last}].content[${j}].text must be a string`, `messages[${last}].content[${j}].text`);
    return [p.text];
  });
  const instruction = instructionOf(texts.length === 0 ? undefined : texts.join('\n'), `messages[${last}].content`, limits);

  let image: { url: unknown; param: string } | null = null;
  for (const index of [...userIndexes].reverse()) {
    const found = parts(index).map((p, j) => ({ p, j })).filter(({ p }) => p.type === 'image_url');
    if (found.length > 1) throw badRequest('too_many_images', `messages[${index}] has ${found.length} images; send one screenshot`, `messages[${index}].content`);
    if (found.length === 1) {
      const { p, j } = found[0]!;
      const param = `messages[${index}].content[${j}].image_url`;
      // image_url is {url} or the URL itself (a string, or that string decoded by the parse worker).
      const nested = isObject(p.image_url) && !(p.image_url instanceof DecodedImageField);
      image = { url: nested ? (p.image_url as { url?: unknown }).url : p.image_url, param: nested ? `${param}.url` : param };
      break;
    }
  }
  if (!image) throw badRequest('missing_image', 'no image: send the screenshot as an image_url content part with a data URI (data:image/png;base64,...)', 'messages');
  const maxTokens = b.max_completion_tokens ?? b.max_tokens;
  const maxNewTokens = tokensOf(maxTokens, b.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens', limits);
  const streamOptions = isObject(b.stream_options) ? b.stream_options : {};
  return {
    image: base64ImageBytes(image.url, image.param, limits.maxImageBytes),
    instruction,
    user: model === baseModel ? null : model,
    model,
    maxNewTokens,
    stream: b.stream === true,
    includeUsage: streamOptions.include_usage === true,
    sampling: samplingOf(b),
  };
}

/** Where a field sits in a body: keys and array indexes from the top. */
export type FieldPath = Array<string | number>;

/**
 * The image fields of a body as the parsers above and POST /v1/feedback read them (the string values only): what the
 * JSON parse worker decodes for a large body, so the event loop never decodes megabytes of base64.
 */
export function imageFieldPaths(route: string, body: unknown): FieldPath[] {
  if (!isObject(body)) return [];
  if (route === '/v1/ground' || route === '/v1/feedback') return typeof body.image === 'string' ? [['image']] : [];
  if (route !== '/v1/chat/completions' || !Array.isArray(body.messages)) return [];
  return body.messages.flatMap((message: unknown, i) => {
    if (!isObject(message) || message.role !== 'user' || !Array.isArray(message.content)) return [];
    return message.content.flatMap((part: unknown, j): FieldPath[] => {
      if (!isObject(part) || part.type !== 'image_url') return [];
      if (typeof part.image_url === 'string') return [['messages', i, 'content', j, 'image_url']];
      return isObject(part.image_url) && typeof part.image_url.url === 'string' ? [['messages', i, 'content', j, 'image_url', 'url']] : [];
    });
  });
}

/** The object or array that holds the field at `path` of `body`, and its key there. */
export function fieldHolder(body: unknown, path: FieldPath): { holder: Record<string | number, unknown>; key: string | number } {
  let holder = body as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) holder = holder[key] as Record<string | number, unknown>;
  return { holder, key: path.at(-1)! };
}
