// A server many tenants share (issue #16), on a tiny random model over loopback:
// - keys: API keys (several), an admin key for adapters and user routes, 401/403 in OpenAI's shape; JSON only as
//   application/json; the Host allow-list; the warning when listening beyond loopback without a key;
// - adapters checked on load (finite weights, integer rank, known targets, sane alpha), and rows without an adapter
//   untouched by an adapter whose numbers overflow; adapters pinned by the batch that uses them;
// - one namespace for adapters and feedback users; limits checked before decoding (declared pixels, aspect ratio,
//   SVG, body size per route, nesting) and /health answering while a large image is processed;
// - feedback validated as inference validates it, and a poisoned stored sample quarantined, not retried forever.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { crc32 } from 'node:zlib';
import OpenAI from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { appendLineDurable } from '../lib/personalize/durable.js';
import { readDataset } from '../lib/data/manifest.js';
import { writeSynthDataset } from '../lib/data/synth/index.js';
import type { Sample } from '../lib/data/types.js';
import { initRandomModel } from '../lib/engine/configs.js';
import { Qwen3VL, type GenerateResult } from '../lib/engine/model.js';
import { Grounder } from '../lib/grounding/grounder.js';
import { Personalizer } from '../lib/personalize/personalizer.js';
import { readSafetensors, writeSafetensors } from '../lib/safetensors.js';
import type { ServedPersonalizer } from '../lib/serve/feedback-routes.js';
import { startServer, type RunningServer } from '../lib/serve/server.js';
import { JsonDepth, OffThreadBodies } from '../lib/serve/limits.js';
import { workerUrl } from '../lib/util/worker-url.js';

const work = mkdtempSync(join(tmpdir(), 'pigg-security-'));
const data = join(work, 'data');
const base = join(work, 'tiny');
const roots = join(work, 'adapters');
const IMAGE = { minPixels: 65536, maxPixels: 100352 };
const GROUNDER = { device: 'cpu', dtype: 'fp32' as const, image: IMAGE, maxNewTokens: 24, constrain: 'none' as const, imageWorkers: 1 };

let samples: Sample[];
let png: Buffer;
let grounder: Grounder;

interface ApiErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

/** A LoRA folder (rank 2 on q_proj) saved from a fresh trainer, its weights and config then rewritten by `edit`. */
async function adapter(name: string, edit: (config: Record<string, unknown>, tensors: ReturnType<typeof readSafetensors>) => void = () => {}): Promise<string> {
  const dir = join(roots, name);
  const model = await Qwen3VL.load(base, { device: 'cpu', dtype: 'fp32' });
  try {
    const trainer = await model.createTrainer({ learningRate: 0, totalSteps: 1, lora: { rank: 2, alpha: 4, dropout: 0, targets: ['q_proj'] } });
    await trainer.save(dir);
    trainer.dispose();
  } finally {
    model.dispose();
  }
  const config = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  const tensors = readSafetensors(join(dir, 'adapter_model.safetensors'));
  edit(config, tensors);
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config));
  writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
  return dir;
}

const fill = (value: number) => (_config: Record<string, unknown>, tensors: ReturnType<typeof readSafetensors>) => {
  for (const tensor of tensors.values()) (tensor.data as Float32Array).fill(value);
};

/** A PNG whose header declares width x height (the pixels stay a 64x64 image's: a 1 KB file, a 2.5 GB decode). */
function declaring(source: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(source);
  out.writeUInt32BE(width, 16);
  out.writeUInt32BE(height, 20);
  out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
  return out;
}

/** A PNG of random pixels (it does not compress): about 1.6 MB, a body of over a MiB in base64. */
const noisyPng = () => sharp(randomBytes(720 * 720 * 3), { raw: { width: 720, height: 720, channels: 3 } }).png().toBuffer();

const dataUri = (bytes: Buffer, type = 'image/png') => `data:${type};base64,${bytes.toString('base64')}`;

function post(url: string, body: unknown, key?: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function expectError(response: Response, status: number, code: string, message: RegExp): Promise<ApiErrorBody> {
  const body = (await response.json()) as ApiErrorBody;
  expect(response.status, JSON.stringify(body)).toBe(status);
  expect(body.error.code).toBe(code);
  expect(body.error.message).toMatch(message);
  return body;
}

/** A GET with a Host header of our choosing (fetch sets its own). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((done, fail) => {
    const req = httpRequest(url, { headers: { host } }, (res) => {
      res.resume();
      done(res.statusCode!);
    });
    req.on('error', fail);
    req.end();
  });
}

beforeAll(async () => {
  await writeSynthDataset(data, { users: 1, personal: 1, samplesPerUser: 8, seed: 7, small: true });
  samples = (await readDataset(data)).samples;
  png = readFileSync(join(data, samples[0]!.image));
  await initRandomModel('tiny', base, { seed: 0 });
  mkdirSync(roots, { recursive: true });
  await adapter('good');
  grounder = await Grounder.load(base, GROUNDER);
});

afterAll(async () => {
  await grounder?.[Symbol.asyncDispose]();
  rmSync(work, { recursive: true, force: true });
});

describe('keys, content type, Host', () => {
  let server: RunningServer;
  const ground = () => ({ image: png.toString('base64'), instruction: samples[0]!.instruction });

  beforeAll(async () => {
    server = await startServer({ grounder, port: 0, access: { apiKeys: ['client-1', 'client-2'], adminKeys: ['admin'] }, adapterRoots: [roots] });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('needs an API key on every route but /health and /ready (401 in OpenAI\'s shape, any of several keys)', async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect((await fetch(`${server.url}/ready`)).status).toBe(200);
    const none = await expectError(await fetch(`${server.url}/v1/models`), 401, 'invalid_api_key', /no API key/);
    expect(none.error.type).toBe('invalid_request_error');
    await expectError(await post(`${server.url}/v1/ground`, ground(), 'client-3'), 401, 'invalid_api_key', /not valid/);
    await expectError(await fetch(`${server.url}/metrics`), 401, 'invalid_api_key', /no API key/);
    // An unknown route does not say it is unknown to a client without a key.
    await expectError(await fetch(`${server.url}/v1/secret`), 401, 'invalid_api_key', /no API key/);
    expect((await post(`${server.url}/v1/ground`, ground(), 'client-2')).status).toBe(200);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    expect(await client.models.list().catch((error: unknown) => error)).toBeInstanceOf(OpenAI.AuthenticationError);
    const good = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'client-1', maxRetries: 0 });
    expect((await good.models.list()).data.map((m) => m.id)).toEqual(['tiny']);
  });

  it('adapter load and unload need the admin key (403 for a client key); paths only under the roots', async () => {
    const adapters = `${server.url}/v1/adapters`;
    await expectError(await post(adapters, { name: 'g', path: 'good' }, 'client-1'), 403, 'permission_denied', /admin key/);
    await expectError(await fetch(`${adapters}/g`, { method: 'DELETE', headers: { authorization: 'Bearer client-1' } }), 403, 'permission_denied', /admin key/);
    const added = await post(adapters, { name: 'g', path: 'good' }, 'admin');
    expect(added.status).toBe(201);
    // The listing names the folder relative to its root, never the server's path.
    const listed = await (await fetch(adapters, { headers: { authorization: 'Bearer client-1' } })).json() as { data: Array<{ id: string; path: string }> };
    expect(listed.data).toEqual([expect.objectContaining({ id: 'g', path: 'good' })]);
    expect(JSON.stringify(listed)).not.toContain(work);
    // Outside the roots: one answer whether the folder exists or not.
    const exists = await expectError(await post(adapters, { name: 'x', path: data }, 'admin'), 400, 'invalid_path', /under one of the server's adapter roots/);
    const absent = await expectError(await post(adapters, { name: 'x', path: join(work, 'absent') }, 'admin'), 400, 'invalid_path', /under one of/);
    expect(absent).toEqual(exists);
    expect((await fetch(`${adapters}/g`, { method: 'DELETE', headers: { authorization: 'Bearer admin' } })).status).toBe(200);
  });

  it('with API keys but no admin key, the admin routes are off', async () => {
    const other = await startServer({ grounder, port: 0, access: { apiKeys: ['k'] }, adapterRoots: [roots] });
    try {
      await expectError(await post(`${other.url}/v1/adapters`, { name: 'g', path: 'good' }, 'k'), 403, 'permission_denied', /has none/);
    } finally {
      await other.close();
    }
  });

  it('reads JSON only as application/json: a text/plain "simple" request is 415 and does nothing', async () => {
    const response = await fetch(`${server.url}/v1/ground`, { method: 'POST', headers: { 'content-type': 'text/plain', authorization: 'Bearer client-1' }, body: JSON.stringify(ground()) });
    await expectError(response, 415, 'unsupported_media_type', /application\/json/);
  });

  it('answers only to allowed Host names (DNS rebinding)', async () => {
    const port = server.port;
    expect(await getWithHost(`${server.url}/health`, `localhost:${port}`)).toBe(200);
    expect(await getWithHost(`${server.url}/health`, `127.0.0.1:${port}`)).toBe(200);
    expect(await getWithHost(`${server.url}/health`, `attacker.example:${port}`)).toBe(403);
    const named = await startServer({ grounder, port: 0, access: { allowedHosts: ['pigg.internal'] } });
    try {
      expect(await getWithHost(`${named.url}/health`, `pigg.internal:${named.port}`)).toBe(200);
      expect(await getWithHost(`${named.url}/health`, `attacker.example:${named.port}`)).toBe(403);
    } finally {
      await named.close();
    }
  });

  it('pigg serve takes its keys from PIGG_API_KEY / PIGG_ADMIN_KEY (comma-separated) and warns when open beyond loopback', async () => {
    const cli = join(import.meta.dirname, '..', 'dist', 'cli', 'index.js');
    const start = (args: string[], env: Record<string, string>) => new Promise<{ child: ChildProcess; url: string; stderr: () => string }>((done, fail) => {
      const child = spawn(process.execPath, [cli, 'serve', '--model', base, '--port', '0', '--image-workers', '0', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const match = /listening on (http:\/\/[\d.]+:\d+)/.exec(stderr);
        if (match) done({ child, url: match[1]!, stderr: () => stderr });
      });
      child.on('exit', (code) => fail(new Error(`pigg serve exited ${code}: ${stderr}`)));
    });
    const stop = (child: ChildProcess) => new Promise((done) => {
      child.removeAllListeners('exit');
      child.once('exit', done);
      child.kill('SIGTERM');
    });
    const keyed = await start(['--host', '127.0.0.1'], { PIGG_API_KEY: 'one, two', PIGG_ADMIN_KEY: 'boss' });
    try {
      await expectError(await fetch(`${keyed.url}/v1/models`), 401, 'invalid_api_key', /no API key/);
      expect((await fetch(`${keyed.url}/v1/models`, { headers: { authorization: 'Bearer two' } })).status).toBe(200);
      await expectError(await post(`${keyed.url}/v1/adapters`, { name: 'x', path: 'y' }, 'one'), 403, 'permission_denied', /admin key/);
      expect(keyed.stderr()).not.toMatch(/WARNING/);
    } finally {
      await stop(keyed.child);
    }
    const open = await start(['--host', '0.0.0.0'], { PIGG_API_KEY: '', PIGG_ADMIN_KEY: '' });
    await stop(open.child);
    expect(open.stderr()).toMatch(/WARNING: pigg serve listens on 0\.0\.0\.0 WITHOUT an API key/);
  });

  it('warns loudly when listening beyond loopback without a key, not with one', async () => {
    const warnings: string[] = [];
    const open = await startServer({ grounder, host: '0.0.0.0', port: 0, onWarning: (m) => warnings.push(m) });
    await open.close();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/listens on 0\.0\.0\.0 WITHOUT an API key/);
    const keyed = await startServer({ grounder, host: '0.0.0.0', port: 0, access: { apiKeys: ['k'], adminKeys: ['a'] }, onWarning: (m) => warnings.push(m) });
    await keyed.close();
    expect(warnings).toHaveLength(1);
  });
});

describe('adapters: checked on load, isolated per row, pinned by their batch', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer({ grounder, port: 0, adapterRoots: [roots] });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('refuses NaN/Inf weights, a fractional rank, unknown targets and an absurd alpha, with the folder named relative to its root', async () => {
    await adapter('nan', fill(Number.NaN));
    await adapter('inf', (config, tensors) => ((tensors.values().next().value!.data as Float32Array)[3] = Number.POSITIVE_INFINITY));
    await adapter('rank', (config) => (config.r = 2.5));
    await adapter('target', (config) => (config.target_modules = ['q_proj', 'qkv_proj']));
    await adapter('alpha', (config) => (config.lora_alpha = 1e9));
    const cases: Array<[string, RegExp]> = [
      ['nan', /NaN or infinite weights/], ['inf', /NaN or infinite weights/], ['rank', /r must be an integer, got 2\.5/],
      ['target', /'qkv_proj', which is no linear layer/], ['alpha', /lora_alpha must be a finite number/],
    ];
    for (const [name, message] of cases) {
      const body = await expectError(await post(`${server.url}/v1/adapters`, { name, path: name }), 400, 'invalid_adapter', message);
      expect(body.error.message, name).not.toContain(work);
    }
    expect(grounder.adapters()).toEqual([]);
  });

  it('a row without an adapter answers the same beside an adapter whose numbers overflow to infinity', async () => {
    await adapter('huge', fill(1e19));
    await grounder.addAdapter('huge', join(roots, 'huge'));
    try {
      const sample = samples[1]!;
      const image = readFileSync(join(data, sample.image));
      const alone = await grounder.ground(image, sample.instruction);
      const sizes: number[] = [];
      const generate = grounder.model.generate.bind(grounder.model);
      grounder.model.generate = (inputs, options) => {
        sizes.push(options?.adapters?.length ?? 0);
        return generate(inputs, options);
      };
      try {
        const [together, poisoned] = await Promise.all([grounder.ground(image, sample.instruction), grounder.ground(image, sample.instruction, { user: 'huge' })]);
        expect(sizes).toEqual([2]); // one batch: the base row beside the overflowing adapter's
        expect(together.text).toBe(alone.text);
        expect(together.grid).toEqual(alone.grid);
        expect(poisoned.text).not.toBe(alone.text);
      } finally {
        grounder.model.generate = generate;
      }
    } finally {
      grounder.removeAdapter('huge');
    }
  });

  it('DELETE while a batch that uses the adapter waits for the engine: the batch answers, the adapter goes after it', async () => {
    await grounder.addAdapter('pinned', join(roots, 'good'));
    const generate = grounder.model.generate.bind(grounder.model);
    let release!: () => void;
    const gate = new Promise<void>((done) => (release = done));
    let entered!: () => void;
    const waiting = new Promise<void>((done) => (entered = done));
    grounder.model.generate = async (inputs, options): Promise<GenerateResult> => {
      if (options?.adapters?.includes('pinned')) {
        entered();
        await gate; // the engine is busy (a training step, another batch)
      }
      return generate(inputs, options);
    };
    try {
      const body = (user: string | null) => ({ image: png.toString('base64'), instruction: samples[0]!.instruction, user });
      const batch = [post(`${server.url}/v1/ground`, body(null)), post(`${server.url}/v1/ground`, body('pinned'))];
      await waiting;
      const deleted = await fetch(`${server.url}/v1/adapters/pinned`, { method: 'DELETE' });
      expect(deleted.status).toBe(200);
      // Gone for new requests at once, still in the engine for the batch holding it.
      await expectError(await post(`${server.url}/v1/ground`, body('pinned')), 404, 'model_not_found', /no adapter named 'pinned'/);
      expect(grounder.adapters().map((a) => a.name)).toEqual([]);
      expect(grounder.model.adapters().map((a) => a.name)).toEqual(['pinned']);
      release();
      const answers = await Promise.all(batch);
      expect(answers.map((r) => r.status)).toEqual([200, 200]);
      expect(((await answers[1]!.json()) as { adapter: string }).adapter).toBe('pinned');
      expect(grounder.model.adapters().map((a) => a.name)).toEqual([]);
    } finally {
      grounder.model.generate = generate;
    }
  });
});

describe('limits before decoding, /health during a large image', () => {
  let server: RunningServer;
  const ground = (image: Buffer, type?: string) => ({ image: dataUri(image, type), instruction: 'Open settings' });

  beforeAll(async () => {
    server = await startServer({ grounder, port: 0 });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('a PNG declaring 16383x16383 pixels, an SVG, an aspect ratio over 200: 400 from the header, nothing decoded', async () => {
    const url = `${server.url}/v1/ground`;
    await expectError(await post(url, ground(declaring(png, 16383, 16383))), 400, 'invalid_image', /declares 16383x16383 = 268402689 pixels, over the limit of 16777216/);
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="16000" height="16000"><rect width="16000" height="16000"/></svg>');
    await expectError(await post(url, ground(svg, 'image/svg+xml')), 400, 'invalid_image', /SVG is off on this server/);
    const strip = await sharp({ create: { width: 4020, height: 20, channels: 3, background: '#808080' } }).png().toBuffer();
    await expectError(await post(url, ground(strip)), 400, 'invalid_image', /4020x20: its aspect ratio 201\.0 is over 200/);
    // The same instruction holding a control token: a 400 naming it, not a 500 from the engine.
    await expectError(await post(url, { image: png.toString('base64'), instruction: 'Open <|image_pad|> settings' }), 400, 'invalid_argument', /control token '<\|image_pad\|>'/);
  });

  it('SVG on request: its declared pixels are bounded like any image\'s', async () => {
    const own = await Grounder.load(base, { ...GROUNDER, input: { allowSvg: true, maxImagePixels: 1000 * 1000 } });
    try {
      const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="16000" height="16000"></svg>');
      await expect(own.ground(svg, 'Open settings')).rejects.toThrow(/declares 16000x16000 = 256000000 pixels, over the limit of 1000000/);
    } finally {
      await own[Symbol.asyncDispose]();
    }
  });

  it('a deeply nested body is 400 before it is parsed; small routes take small bodies', async () => {
    const scan = (max: number, ...chunks: string[]) => {
      const depth = new JsonDepth(max);
      return chunks.every((chunk) => depth.scan(Buffer.from(chunk)));
    };
    expect(scan(3, '{"a": [["]]]]]]\\"]]"]]}')).toBe(true); // brackets in strings and escaped quotes do not count
    expect(scan(3, '{"a": [["x\\', '"[[[[", "é[[[["]]]}')).toBe(true); // an escape and a string split across chunks
    expect(scan(3, '{"a": [[', '[1]]]}')).toBe(false);
    await expectError(await post(`${server.url}/v1/ground`, '['.repeat(1_000_000)), 400, 'invalid_json', /nests deeper than 32 levels/);
    await expectError(await post(`${server.url}/v1/adapters`, { name: 'x', path: 'y'.repeat(100_000) }), 413, 'body_too_large', /over the limit of 65536 bytes/);
  });

  it('a body of a MiB or more is parsed on a worker thread, with the same answers', async () => {
    const pad = 'x'.repeat(2 ** 21);
    const body = JSON.stringify({ image: png.toString('base64'), instruction: samples[0]!.instruction, pad });
    const inline = await (await post(`${server.url}/v1/ground`, { image: png.toString('base64'), instruction: samples[0]!.instruction })).json() as { text: string };
    const response = await post(`${server.url}/v1/ground`, body);
    expect(response.status).toBe(200);
    expect(((await response.json()) as { text: string }).text).toBe(inline.text);
    await expectError(await post(`${server.url}/v1/ground`, `${body.slice(0, -1)},}`), 400, 'invalid_json', /not valid JSON \(.+\)/);
    await expectError(await post(`${server.url}/v1/ground`, `{"__proto__": {"admin": true}, "pad": "${pad}"}`), 400, 'invalid_json', /__proto__ or constructor is not allowed/);
  });

  it('a large body\'s image (decoded on the parse worker) reaches the Grounder byte for byte, in shared memory; faults name the field', async () => {
    const image = await noisyPng();
    const calls = vi.spyOn(grounder, 'ground');
    try {
      const grounded = await post(`${server.url}/v1/ground`, ground(image));
      expect(grounded.status).toBe(200);
      const chat = await post(`${server.url}/v1/chat/completions`, {
        messages: [{ role: 'user', content: [{ type: 'text', text: 'Open settings' }, { type: 'image_url', image_url: { url: dataUri(image) } }] }],
      });
      expect(chat.status).toBe(200);
      expect(calls).toHaveBeenCalledTimes(2);
      for (const [bytes] of calls.mock.calls) {
        expect(Buffer.compare(bytes as Buffer, image)).toBe(0);
        expect((bytes as Buffer).buffer).toBeInstanceOf(SharedArrayBuffer);
      }
    } finally {
      calls.mockRestore();
    }
    const pad = 'A'.repeat(2 ** 21);
    await expectError(await post(`${server.url}/v1/ground`, { image: `data:image/png,${pad}`, instruction: 'Open settings' }), 400, 'invalid_image', /image is a data URI without ';base64,'/);
    await expectError(await post(`${server.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Open settings' }, { type: 'image_url', image_url: `${pad}!A` }] }],
    }), 400, 'invalid_image', /messages\[0\]\.content\[1\]\.image_url is not valid base64/);
    const small = await startServer({ grounder, port: 0, maxImageBytes: 2 ** 20, bodyLimit: 2 ** 22 });
    try {
      await expectError(await post(`${small.url}/v1/ground`, { image: pad, instruction: 'Open settings' }), 413, 'image_too_large', /the image is 1572864 bytes, over the limit of 1048576 bytes/);
      // Sent in chunks without a Content-Length: counted as it arrives, refused once over the limit (the worker had half of it).
      const chunked = await new Promise<{ status: number; body: string }>((done, fail) => {
        const req = httpRequest(`${small.url}/v1/ground`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => done({ status: res.statusCode!, body }));
        });
        req.on('error', fail);
        req.write(`{"image": "${pad}`);
        req.write(pad);
        req.end(`${pad.slice(0, 16)}"}`);
      });
      expect(chunked.status).toBe(413);
      expect((JSON.parse(chunked.body) as ApiErrorBody).error.message).toMatch(/over the limit of 4194304 bytes/);
      expect((await post(`${small.url}/v1/ground`, ground(png))).status).toBe(200);
    } finally {
      await small.close();
    }
  });

  it('/health answers while a large image is decoded and resized (on an image worker)', async () => {
    const large = await sharp({ create: { width: 4096, height: 4096, channels: 3, background: '#3060a0' } }).png().toBuffer();
    let settled = false;
    const big = post(`${server.url}/v1/ground`, ground(large)).then((r) => {
      settled = true;
      return r;
    });
    while (server.inFlight === 0) await new Promise((done) => setTimeout(done, 1));
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(settled).toBe(false);
    expect((await big).status).toBe(200);
  });
});

describe('feedback: one namespace, validated as inference, quarantine', () => {
  it('a feedback user cannot take a served adapter\'s name, nor an adapter a user\'s; bad taps are refused before they are stored', async () => {
    const dir = join(work, 'feedback-names');
    await grounder.addAdapter('static', join(roots, 'good'));
    const personalizer = await Personalizer.open({ dir, grounder, auto: false });
    const server = await startServer({ grounder, port: 0, personalizer, adapterRoots: [roots] });
    try {
      const tap = (user: string, instruction = samples[0]!.instruction, image = png) => ({ user, image: image.toString('base64'), instruction, tap: { x: 5, y: 5 } });
      await expectError(await post(`${server.url}/v1/feedback`, tap('static')), 409, 'name_taken', /'static' is the name of an adapter this server serves/);
      expect((await post(`${server.url}/v1/feedback`, tap('alice'))).status).toBe(201);
      await expectError(await post(`${server.url}/v1/adapters`, { name: 'alice', path: 'good' }), 409, 'name_taken', /feedback user's id/);
      // The checks inference makes, before anything is acknowledged.
      await expectError(await post(`${server.url}/v1/feedback`, tap('alice', 'Tap <|image_pad|> here')), 400, 'invalid_instruction', /control token/);
      const strip = await sharp({ create: { width: 20, height: 4020, channels: 3, background: '#808080' } }).png().toBuffer();
      await expectError(await post(`${server.url}/v1/feedback`, tap('alice', 'Tap', strip)), 400, 'invalid_image', /aspect ratio 201\.0 is over 200/);
      await expectError(await post(`${server.url}/v1/feedback`, tap('alice', 'Tap', declaring(png, 16383, 16383))), 400, 'invalid_image', /over the limit/);
      expect(personalizer.store.count('alice')).toBe(1);
      expect(personalizer.store.count('static')).toBe(0);
    } finally {
      await server.close();
      await personalizer.close();
      grounder.removeAdapter('static');
    }
    // A feedback folder whose user is named like an adapter served: an error on open, not a silent switch.
    await grounder.addAdapter('alice', join(roots, 'good'));
    try {
      await expect(Personalizer.open({ dir, grounder, auto: false })).rejects.toThrow(/'alice' is both an adapter served and a feedback user/);
    } finally {
      grounder.removeAdapter('alice');
    }
  });

  it('feedback in a large body stores the exact bytes sent', async () => {
    const dir = join(work, 'feedback-large');
    const image = await noisyPng();
    const personalizer = await Personalizer.open({ dir, grounder, auto: false });
    const server = await startServer({ grounder, port: 0, personalizer });
    try {
      const body = { user: 'carol', image: dataUri(image), instruction: samples[0]!.instruction, tap: { x: 700, y: 10 } };
      expect(JSON.stringify(body).length).toBeGreaterThan(2 ** 20);
      const response = await post(`${server.url}/v1/feedback`, body);
      expect(response.status, await response.clone().text()).toBe(201);
    } finally {
      await server.close();
      await personalizer.close();
    }
    const line = JSON.parse(readFileSync(join(dir, 'users', 'carol', 'manifest.jsonl'), 'utf8').split('\n')[0]!) as Sample & { meta: { image_sha256: string } };
    expect(Buffer.compare(readFileSync(join(dir, 'users', 'carol', line.image)), image)).toBe(0);
    expect(line.meta.image_sha256).toBe(createHash('sha256').update(image).digest('hex'));
  });

  it('GET /v1/users/:id (admin) names the adapter as requests do and shows no server path', async () => {
    const dir = join(work, 'feedback-paths');
    const real = await Personalizer.open({ dir, grounder, auto: false });
    // The real status, with what a user whose version 2 is served and whose last job quarantined a sample shows.
    const image = join(real.dir, 'users', 'dora', 'images', '000003.png');
    const personalizer: ServedPersonalizer = {
      dir: real.dir, knows: () => true, adapterFor: () => 'dora', feedback: real.feedback.bind(real), rollback: real.rollback.bind(real),
      status: async (user) => ({
        ...(await real.status(user)), version: 2, versions: [1, 2], adapter: join(real.dir, 'adapters', 'dora', 'v2'),
        lastDecision: {
          time: '2026-12-05T12:00:00Z', user, decision: 'failed', version: 2, previous: 2, reason: `cannot read ${image}`, error: `ENOENT: ${image}`,
          quarantined: [{ id: 'feedback/dora/000003', reason: `cannot read ${image}` }],
        },
      }),
    };
    const server = await startServer({ grounder, port: 0, personalizer });
    try {
      const text = await (await fetch(`${server.url}/v1/users/dora`)).text();
      expect(text).not.toContain(work);
      const user = JSON.parse(text) as { adapter: string; version: number; last_decision: { reason: string; error: string; quarantined: Array<{ reason: string }> } };
      expect(user).toMatchObject({ id: 'dora', version: 2, adapter: 'dora' });
      expect(user.last_decision.reason).toBe('cannot read users/dora/images/000003.png');
      expect(user.last_decision.error).toBe('ENOENT: users/dora/images/000003.png');
      expect(user.last_decision.quarantined).toEqual([{ id: 'feedback/dora/000003', reason: 'cannot read users/dora/images/000003.png' }]);
    } finally {
      await server.close();
      await real.close();
    }
  });

  /** One short job: the point is whether it runs, not what it learns. */
  const QUICK = {
    auto: false, minNewSamples: 4, lora: { rank: 2, alpha: 4, dropout: 0 },
    overrides: { learningRate: 1e-3, epochs: 1, gradientAccumulation: 1, warmupSteps: 0, gradientCheckpointing: false },
  };

  it('a stored sample that fails training is quarantined and logged, and the next job trains without it', async () => {
    const dir = join(work, 'feedback-poison');
    const personalizer = await Personalizer.open({ dir, grounder, ...QUICK });
    try {
      for (const sample of samples.slice(0, 5)) {
        await personalizer.feedback({ user: 'bob', image: join(data, sample.image), instruction: sample.instruction, tap: sample.target });
      }
      await personalizer.close();
      // A line an older version stored: its instruction holds a control token (every job of bob's used to fail on it).
      const manifest = join(dir, 'users', 'bob', 'manifest.jsonl');
      const first = JSON.parse(readFileSync(manifest, 'utf8').split('\n')[0]!) as Sample;
      copyFileSync(join(dir, 'users', 'bob', first.image), join(dir, 'users', 'bob', 'images', '000005.png'));
      await appendLineDurable(manifest, JSON.stringify({ ...first, id: 'feedback/bob/000005', episode: '000005', image: 'images/000005.png', instruction: 'Tap <|image_pad|> now' }));
    } finally {
      await personalizer.close();
    }
    const reopened = await Personalizer.open({ dir, grounder, ...QUICK });
    try {
      expect(reopened.train('bob')).toBe(true);
      await reopened.idle();
      const decisions = reopened.decisions('bob');
      expect(decisions.map((d) => d.decision)).toEqual(['failed', expect.stringMatching(/^(promoted|rejected)$/)]);
      expect(decisions[0]!.quarantined).toEqual([{ id: 'feedback/bob/000005', reason: expect.stringMatching(/control token '<\|image_pad\|>'/) }]);
      expect(decisions[1]!.samples).toMatchObject({ total: 6, train: 3, holdout: 2 });
      expect((await reopened.status('bob')).quarantined).toEqual(['feedback/bob/000005']);
    } finally {
      await reopened.close();
    }
    // After a restart the quarantine holds (it is read back from decisions.jsonl): a new job fails no more.
    const again = await Personalizer.open({ dir, grounder, ...QUICK });
    try {
      expect(again.quarantinedSamples('bob')).toEqual(['feedback/bob/000005']);
    } finally {
      await again.close();
    }
  });
});

describe('a failure inside the server', () => {
  it('is a 500 in OpenAI\'s shape naming the request id; the engine\'s message is only in the log, under that id', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter((line) => line !== ''));
        done();
      },
    });
    const server = await startServer({ grounder, port: 0, logger: { level: 'error', stream } });
    const generate = grounder.model.generate.bind(grounder.model);
    grounder.model.generate = async () => {
      throw new Error('libtorch: out of memory in /opt/secret/engine.cpp:42');
    };
    try {
      for (const stream of [false, true]) {
        const response = await post(`${server.url}/v1/chat/completions`, {
          stream, messages: [{ role: 'user', content: [{ type: 'text', text: 'Open settings' }, { type: 'image_url', image_url: { url: dataUri(png) } }] }],
        });
        const id = response.headers.get('x-request-id')!;
        expect(id).toMatch(/^req_[0-9a-f]{32}$/);
        const body = await expectError(response, 500, 'internal_error', new RegExp(`^internal error in request ${id}; the server's log has the details$`));
        expect(body.error.type).toBe('server_error');
        expect(JSON.stringify(body)).not.toMatch(/secret|memory/);
        const logged = lines.map((line) => JSON.parse(line) as { reqId?: string }).filter((line) => line.reqId === id);
        expect(logged).toEqual([expect.objectContaining({ level: 50, msg: 'internal error', err: expect.objectContaining({ message: expect.stringContaining('out of memory in /opt/secret/engine.cpp:42') }) })]);
      }
      // A client's mistake is answered in full and not logged as the server's.
      const before = lines.length;
      await expectError(await post(`${server.url}/v1/ground`, { image: dataUri(png) }), 400, 'missing_instruction', /no instruction/);
      expect(lines.length).toBe(before);
    } finally {
      grounder.model.generate = generate;
      await server.close();
    }
  });
});

describe('the engine not answering /ready', () => {
  it('is a 503 naming the request id; the engine\'s message is only in the log', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter((line) => line !== ''));
        done();
      },
    });
    const server = await startServer({ grounder, port: 0, logger: { level: 'error', stream } });
    const adapters = grounder.adapters.bind(grounder);
    grounder.adapters = () => {
      throw new Error('model disposed: /opt/secret/model');
    };
    try {
      const response = await fetch(`${server.url}/ready`);
      const id = response.headers.get('x-request-id')!;
      const body = await expectError(response, 503, 'not_ready', new RegExp(`^the engine is not available \\(request ${id}; the server's log has the details\\)$`));
      expect(JSON.stringify(body)).not.toMatch(/secret|disposed/);
      const logged = lines.map((line) => JSON.parse(line) as { reqId?: string }).filter((line) => line.reqId === id);
      expect(logged).toEqual([expect.objectContaining({ level: 50, err: expect.objectContaining({ message: 'model disposed: /opt/secret/model' }) })]);
    } finally {
      grounder.adapters = adapters;
      await server.close();
    }
  });
});

describe('the body parser\'s worker dying', () => {
  it('fails the bodies it held (sent and ending) and the next body gets a new worker', async () => {
    // The real worker, which dies on a body holding "crash".
    const script = join(work, 'crashing-body-worker.mjs');
    writeFileSync(script, [
      `import ${JSON.stringify(workerUrl(new URL('../lib/serve/limits.ts', import.meta.url).href, 'body-worker.js').href)};`,
      "import { parentPort } from 'node:worker_threads';",
      "parentPort.on('message', (m) => { if (m.kind === 'chunk' && Buffer.from(m.bytes).includes('crash')) throw new Error('out of memory'); });",
    ].join('\n'));
    const bodies = new OffThreadBodies(new URL(`file://${script}`));
    try {
      const ending = bodies.start('/v1/adapters');
      ending.send(Buffer.from('{"name": "a"}'));
      const sending = bodies.start('/v1/adapters');
      sending.send(Buffer.from('{"name": '));
      const crashing = bodies.start('/v1/adapters');
      crashing.send(Buffer.from('{"crash": 1}'));
      const ended = ending.end(); // its end reaches the worker after the chunk that kills it
      await expect(crashing.end()).rejects.toThrow(/^the body parser's worker thread stopped \(out of memory\)$/);
      await expect(ended).rejects.toThrow(/worker thread stopped/);
      sending.send(Buffer.from('"b"}'));
      await expect(sending.end()).rejects.toThrow(/worker thread stopped/);
      const next = bodies.start('/v1/adapters');
      next.send(Buffer.from('{"name": "c", "n": [1, 2]}'));
      await expect(next.end()).resolves.toEqual({ name: 'c', n: [1, 2] });
    } finally {
      await bodies.close();
    }
  });
});
