// The JSON parse worker of lib/serve/limits.ts: gathers a large body as it arrives, parses it and decodes its image
// fields into shared memory, so that neither joining, JSON.parse nor the base64 decoding of a 25 MB body holds the
// event loop, and the decoded image comes back without its base64 text (which would be copied) and without a copy
// of its bytes.
import { parentPort } from 'node:worker_threads';
import { readBase64Image } from './base64-image.js';
import type { BodyMessage, BodyReply, DecodedField } from './limits.js';
import { fieldHolder, imageFieldPaths } from './requests.js';

const port = parentPort;
if (!port) throw new Error('body-worker.js runs only as a worker thread of the JSON body parser (lib/serve/limits.ts)');

/** The chunks of each body not yet ended. */
const bodies = new Map<number, Uint8Array[]>();

/** A body parsed, its image fields decoded and, in the value, set to null. */
function parse(bytes: Buffer, route: string): { value: unknown; images: DecodedField[] } {
  const text = bytes.toString('utf8');
  // Refused as fastify's own parser refuses it.
  if (/"(?:__proto__|constructor)"\s*:/.test(text)) throw new Error('a key __proto__ or constructor is not allowed');
  const value: unknown = JSON.parse(text);
  const images: DecodedField[] = [];
  for (const path of imageFieldPaths(route, value)) {
    const { holder, key } = fieldHolder(value, path);
    const field = holder[key] as string;
    if (field === '') continue; // the parsers' "no image"
    images.push({ path, ...readBase64Image(field) });
    holder[key] = null;
  }
  return { value, images };
}

port.on('message', (message: BodyMessage) => {
  const { id } = message;
  if (message.kind === 'chunk') {
    const chunks = bodies.get(id);
    if (chunks) chunks.push(message.bytes);
    else bodies.set(id, [message.bytes]);
    return;
  }
  const chunks = bodies.get(id) ?? [];
  bodies.delete(id);
  if (message.kind === 'drop') return;
  try {
    port.postMessage({ id, ...parse(Buffer.concat(chunks), message.route) } satisfies BodyReply);
  } catch (error) {
    port.postMessage({ id, error: (error as Error).message } satisfies BodyReply);
  }
});
