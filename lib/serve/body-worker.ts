// The JSON parse worker of lib/serve/limits.ts: parses a large body and decodes its image fields into shared memory,
// so that neither JSON.parse nor the base64 decoding of a 25 MB body holds the event loop, and the decoded image
// comes back without its base64 text (which would be copied) and without a copy of its bytes.
import { parentPort } from 'node:worker_threads';
import { readBase64Image } from './base64-image.js';
import type { BodyJob, BodyReply, DecodedField } from './limits.js';
import { fieldHolder, imageFieldPaths } from './requests.js';

const port = parentPort;
if (!port) throw new Error('body-worker.js runs only as a worker thread of the JSON body parser (lib/serve/limits.ts)');
port.on('message', ({ id, bytes, route }: BodyJob) => {
  try {
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
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
    port.postMessage({ id, value, images } satisfies BodyReply);
  } catch (error) {
    port.postMessage({ id, error: (error as Error).message } satisfies BodyReply);
  }
});
