// `pigg serve` on a tiny random model with two LoRA adapters trained a few steps (CPU, fp32, greedy):
// - the official `openai` client (plain and streaming) and plain fetch, concurrently, over base and adapters, get
//   the answers `pigg eval --adapter` gives offline for the same samples;
// - bad input gets one precise 4xx (400, 404, 413) and the server keeps serving; adapters load and unload at run time;
// - on the slow path (the untrained model decodes freely to 512 tokens): a client that disconnects stops its row in
//   the engine, a full queue answers 429 with Retry-After, and SIGTERM to the CLI answers what it accepted, 503 to
//   new requests, and exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readDataset } from '../lib/data/manifest.js';
import { writeSynthDataset } from '../lib/data/synth/index.js';
import type { Sample } from '../lib/data/types.js';
import { initRandomModel } from '../lib/engine/configs.js';
import { Qwen3VL, type GenerateResult } from '../lib/engine/model.js';
import { modelBatch, type PromptSettings } from '../lib/processor/inputs.js';
import type { EvalRecord } from '../lib/data/records.js';
import { Grounder, type GroundResult } from '../lib/grounding/grounder.js';
import { QwenTokenizer } from '../lib/processor/tokenizer.js';
import { ServeMetrics } from '../lib/serve/metrics.js';
import { serve, type Serving } from '../lib/serve/serve.js';
import { startServer, type RunningServer } from '../lib/serve/server.js';

const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'index.js');
const work = mkdtempSync(join(tmpdir(), 'pigg-serve-'));
const data = join(work, 'data');
const base = join(work, 'tiny');
const adaptersDir = join(work, 'adapters');
const IMAGE = { minPixels: 65536, maxPixels: 100352 };
const settings: PromptSettings = { style: 'pigg', image: IMAGE };
const MAX_NEW = 24;
/** A constrained answer needs room for the grammar's longest one (the Grounder refuses a smaller budget). */
const MAX_NEW_CONSTRAINED = 64;
/** The slow path: the untrained model decodes "\n" freely until its budget. */
const SLOW = 512;
/** Free decoding for the answer checks: on these briefly trained adapters free answers vary from sample to sample. */
const CONSTRAIN = 'none' as const;
const MAX_IMAGE_BYTES = 2 ** 20;

let samples: Sample[];
/** Offline answers: `pigg eval` output per model ('base', 'u1', 'u2') and sample id. */
const offline: Record<string, Map<string, EvalRecord>> = {};
const imageOf = (sample: Sample) => readFileSync(join(data, sample.image));
const dataUri = (sample: Sample) => `data:image/png;base64,${imageOf(sample).toString('base64')}`;

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stderr }));
  });
}

/** A LoRA adapter trained a few steps on one user's samples from the random base: its answers depend on the sample. */
async function trainAdapter(dir: string, user: string, rank: number): Promise<void> {
  const tokenizer = QwenTokenizer.fromDir(base);
  const own = await Qwen3VL.load(base, { device: 'cpu', dtype: 'fp32' });
  try {
    const trainer = await own.createTrainer({ learningRate: 1e-2, warmupSteps: 0, totalSteps: 20, weightDecay: 0, seed: 1, lora: { rank, alpha: 2 * rank, dropout: 0 } });
    const mine = samples.filter((s) => s.user === user);
    for (let step = 0; step < 20; step++) await trainer.step(await modelBatch(tokenizer, [mine[step % mine.length]!], data, settings, 'pigg'));
    await trainer.save(dir);
    trainer.dispose();
  } finally {
    own.dispose();
  }
}

const engineFlags = ['--min-pixels', String(IMAGE.minPixels), '--max-pixels', String(IMAGE.maxPixels), '--image-workers', '0'];
/** pigg eval decodes and reads answers as the server does (not PIGG's way, eval's default). */
const SERVED = ['--resampler', 'pillow', '--decoding', 'greedy', '--parser', 'robust'];

beforeAll(async () => {
  await writeSynthDataset(data, { users: 2, personal: 1, samplesPerUser: 10, seed: 5, small: true });
  await initRandomModel('tiny', base, { seed: 0 });
  samples = (await readDataset(data)).samples;
  await trainAdapter(join(adaptersDir, 'u1'), '1', 4);
  await trainAdapter(join(adaptersDir, 'u2'), '2', 8);
  // The offline answers, from the CLI: pigg eval [--adapter DIR] on both users' samples.
  const out = join(work, 'eval');
  const runs = [['base', null, CONSTRAIN, MAX_NEW], ['u1', join(adaptersDir, 'u1'), CONSTRAIN, MAX_NEW], ['u2', join(adaptersDir, 'u2'), CONSTRAIN, MAX_NEW],
    ['u1-auto', join(adaptersDir, 'u1'), 'auto', MAX_NEW_CONSTRAINED]] as const;
  for (const [name, adapter, constrain, maxNew] of runs) {
    const result = await run(['eval', '--model', base, '--data', data, '--users', '1-2', '--name', name, '--out', out, '--max-new-tokens', String(maxNew),
      '--constrain', constrain, '--batch', '4', ...engineFlags, ...SERVED, ...(adapter ? ['--adapter', adapter] : [])]);
    expect(result.code, result.stderr).toBe(0);
    offline[name] = new Map();
    for (const user of ['1', '2']) {
      for (const record of JSON.parse(readFileSync(join(out, name, `user_${user}`, 'out.json'), 'utf8')) as EvalRecord[]) offline[name]!.set(record.id, record);
    }
  }
  // The adapters answer differently from each other and from sample to sample, so equal answers below mean something.
  const texts = (name: string) => samples.map((s) => offline[name]!.get(s.id)!.output);
  expect(new Set(texts('u1')).size).toBeGreaterThan(3);
  expect(new Set(texts('u2')).size).toBeGreaterThan(3);
  expect(texts('u1')).not.toEqual(texts('u2'));
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

interface ApiErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

async function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });
}

async function expectError(response: Response, status: number, code: string, message: RegExp): Promise<ApiErrorBody> {
  const body = (await response.json()) as ApiErrorBody;
  expect(response.status, JSON.stringify(body)).toBe(status);
  expect(body.error.code).toBe(code);
  expect(body.error.message).toMatch(message);
  expect(typeof body.error.type).toBe('string');
  return body;
}

function chatMessages(sample: Sample): OpenAI.Chat.ChatCompletionMessageParam[] {
  return [
    { role: 'system', content: 'You ground GUI instructions.' },
    { role: 'user', content: [{ type: 'image_url', image_url: { url: dataUri(sample) } }, { type: 'text', text: sample.instruction }] },
  ];
}

/** A metric's value from the Prometheus text (the first line that starts with `series`). */
function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (!line) throw new Error(`no ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

describe('pigg serve with two adapters', () => {
  let server: Serving;
  let client: OpenAI;

  beforeAll(async () => {
    server = await serve({
      model: base, adapters: adaptersDir, port: 0, maxImageBytes: MAX_IMAGE_BYTES,
      grounder: { device: 'cpu', dtype: 'fp32', image: IMAGE, maxNewTokens: MAX_NEW, imageWorkers: 0, constrain: CONSTRAIN, maxBatch: 8 },
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'anything', maxRetries: 0 });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('lists the base model and the adapters found under --adapters (OpenAI list shape)', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny', 'u1', 'u2']);
    for (const m of models.data) {
      expect(m.object).toBe('model');
      expect(m.owned_by).toBe('pigg');
    }
    expect((await client.models.retrieve('u2')).id).toBe('u2');
  });

  it('the openai client (plain and streaming) and fetch, concurrently, get the offline `pigg eval` answers', async () => {
    const models = ['base', 'u1', 'u2'] as const;
    const kinds = ['openai', 'openai-stream', 'fetch-ground', 'fetch-chat'] as const;
    const calls = samples.map(async (sample, i) => {
      const name = models[i % 3]!;
      const kind = kinds[Math.floor(i / 3) % 4]!;
      const model = name === 'base' ? 'tiny' : name;
      const expected = offline[name]!.get(sample.id)!;
      if (kind === 'openai') {
        const completion = await client.chat.completions.create({ model, messages: chatMessages(sample) });
        expect(completion.object).toBe('chat.completion');
        expect(completion.model).toBe(model);
        expect(completion.choices).toHaveLength(1);
        expect(completion.choices[0]!.message.role).toBe('assistant');
        expect(completion.usage!.completion_tokens).toBeGreaterThan(0);
        expect(completion.usage!.prompt_tokens).toBeGreaterThan(64); // the image's tokens alone are more
        expect(completion.usage!.total_tokens).toBe(completion.usage!.prompt_tokens + completion.usage!.completion_tokens);
        expect(completion.choices[0]!.finish_reason).toBe(completion.usage!.completion_tokens === MAX_NEW ? 'length' : 'stop');
        return { kind, name, text: completion.choices[0]!.message.content, expected };
      }
      if (kind === 'openai-stream') {
        const stream = await client.chat.completions.create({ model, messages: chatMessages(sample), stream: true, stream_options: { include_usage: true } });
        let text = '';
        let finish: string | null = null;
        let usage: OpenAI.CompletionUsage | undefined;
        for await (const chunk of stream) {
          expect(chunk.object).toBe('chat.completion.chunk');
          text += chunk.choices[0]?.delta.content ?? '';
          finish = chunk.choices[0]?.finish_reason ?? finish;
          usage = chunk.usage ?? usage;
        }
        expect(['stop', 'length']).toContain(finish);
        expect(usage!.completion_tokens).toBeGreaterThan(0);
        expect(usage!.prompt_tokens).toBeGreaterThan(64);
        return { kind, name, text, expected };
      }
      if (kind === 'fetch-ground') {
        const response = await post(`${server.url}/v1/ground`, { image: imageOf(sample).toString('base64'), instruction: sample.instruction, user: name === 'base' ? undefined : name });
        expect(response.status).toBe(200);
        const tap = (await response.json()) as GroundResult;
        expect(tap.adapter).toBe(name === 'base' ? null : name);
        expect(tap.parsed ? [tap.grid.x, tap.grid.y] : null).toEqual(expected.pred);
        expect(tap.x).toBe((tap.grid.x / 1000) * sample.width);
        expect(tap.y).toBe((tap.grid.y / 1000) * sample.height);
        expect(tap.referring).toBe(expected.referring);
        return { kind, name, text: tap.text, expected };
      }
      const response = await post(`${server.url}/v1/chat/completions`, { model, messages: chatMessages(sample) });
      expect(response.status).toBe(200);
      const body = (await response.json()) as OpenAI.Chat.ChatCompletion;
      return { kind, name, text: body.choices[0]!.message.content, expected };
    });
    const results = await Promise.all(calls);
    for (const r of results) expect(r.text, `${r.kind} ${r.name} ${r.expected.id}`).toBe(r.expected.output);
    expect(new Set(results.map((r) => r.kind)).size).toBe(4);

    // They were batched: fewer generate calls than requests, some of more than one row, mixing adapters.
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const batches = metric(text, 'pigg_batch_size_count');
    expect(batches).toBeLessThan(samples.length);
    expect(metric(text, 'pigg_batch_size_bucket{le="1"}')).toBeLessThan(batches);
    expect(metric(text, 'pigg_batch_adapters_bucket{le="1"}')).toBeLessThan(batches);
    console.log(`${samples.length} concurrent requests ran in ${batches} generate calls`);
  });

  it('bad input gets one precise 4xx in OpenAI\'s error shape, and the server keeps serving', async () => {
    const sample = samples[0]!;
    const ground = `${server.url}/v1/ground`;
    const chat = `${server.url}/v1/chat/completions`;
    const good = { image: imageOf(sample).toString('base64'), instruction: sample.instruction, user: 'u1' };

    await expectError(await post(ground, '{"image": "abc", '), 400, 'invalid_json', /not valid JSON/);
    await expectError(await post(ground, 'hello', { headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type', /Content-Type: application\/json/);
    await expectError(await post(ground, '[1, 2]'), 400, 'invalid_body', /must be a JSON object, got an array/);
    await expectError(await post(ground, { instruction: 'Open settings' }), 400, 'missing_image', /no image/);
    await expectError(await post(ground, { ...good, image: Buffer.from('not an image at all').toString('base64') }), 400, 'invalid_image', /cannot decode image/);
    await expectError(await post(ground, { ...good, image: '%%% not base64 %%%' }), 400, 'invalid_image', /not valid base64/);
    await expectError(await post(ground, { ...good, image: 'https://example.com/screen.png' }), 400, 'invalid_image', /does not fetch images/);
    await expectError(await post(ground, { ...good, instruction: 'x'.repeat(2001) }), 400, 'instruction_too_long', /2001 characters, over the limit of 2000/);
    await expectError(await post(ground, { ...good, instruction: '   ' }), 400, 'missing_instruction', /empty/);
    await expectError(await post(ground, { ...good, max_new_tokens: MAX_NEW + 1 }), 400, 'invalid_max_tokens', /over this server's limit of 24/);
    await expectError(await post(ground, { ...good, user: 'u7' }), 404, 'model_not_found', /no adapter named 'u7'/);

    // 413: a decoded image over --max-image-bytes, and a body over the body limit.
    const pixels = Buffer.alloc(700 * 700 * 3);
    for (let i = 0, s = 1; i < pixels.length; i++) pixels[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24; // noise: PNG cannot compress it
    const noise = await sharp(pixels, { raw: { width: 700, height: 700, channels: 3 } }).png().toBuffer();
    expect(noise.byteLength).toBeGreaterThan(MAX_IMAGE_BYTES);
    await expectError(await post(ground, { ...good, image: noise.toString('base64') }), 413, 'image_too_large', new RegExp(`${noise.byteLength} bytes, over the limit of ${MAX_IMAGE_BYTES}`));
    await expectError(await post(ground, { ...good, image: 'A'.repeat(3 * 2 ** 20) }), 413, 'body_too_large', /request body is over the limit/);

    // The chat route: an unknown model, no image, a remote image URL, no user message.
    const messages = chatMessages(sample);
    await expectError(await post(chat, { model: 'u7', messages }), 404, 'model_not_found', /the model 'u7' does not exist: this server has the base model 'tiny' and the adapters u1, u2/);
    await expectError(await post(chat, { model: 'u1', messages: [{ role: 'user', content: sample.instruction }] }), 400, 'missing_image', /image_url content part/);
    await expectError(await post(chat, { model: 'u1', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }, { type: 'text', text: 'tap' }] }] }),
      400, 'invalid_image', /messages\[0\]\.content\[0\]\.image_url\.url is a URL/);
    await expectError(await post(chat, { model: 'u1', messages: [{ role: 'system', content: 'hi' }] }), 400, 'missing_instruction', /no user message/);
    await expectError(await post(`${server.url}/v1/nothing`, {}), 404, 'not_found', /no route POST \/v1\/nothing/);

    // The openai client sees the same errors as its typed exceptions.
    const notFound = await client.chat.completions.create({ model: 'u7', messages }).catch((error: unknown) => error);
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError);
    expect((notFound as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');

    // Still serving, with the same answer as before.
    const response = await post(ground, good);
    expect(response.status).toBe(200);
    expect(((await response.json()) as GroundResult).text).toBe(offline.u1!.get(sample.id)!.output);
  });

  it('adapters load and unload at run time (POST / DELETE /v1/adapters)', async () => {
    const sample = samples[4]!;
    const adapters = `${server.url}/v1/adapters`;
    const added = await post(adapters, { name: 'u3', path: join(adaptersDir, 'u1') });
    expect(added.status).toBe(201);
    expect(await added.json()).toMatchObject({ id: 'u3', name: 'u3', rank: 4 });
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['tiny', 'u1', 'u2', 'u3']);
    const answer = await client.chat.completions.create({ model: 'u3', messages: chatMessages(sample) });
    expect(answer.choices[0]!.message.content).toBe(offline.u1!.get(sample.id)!.output);

    const removed = await fetch(`${adapters}/u3`, { method: 'DELETE' });
    expect(removed.status).toBe(200);
    expect(await removed.json()).toEqual({ id: 'u3', object: 'adapter', deleted: true });
    await expectError(await fetch(`${adapters}/u3`, { method: 'DELETE' }), 404, 'model_not_found', /the model 'u3' does not exist/);
    await expectError(await post(`${server.url}/v1/chat/completions`, { model: 'u3', messages: chatMessages(sample) }), 404, 'model_not_found', /'u3' does not exist/);
    // Only folders under the adapter roots (here --adapters), and no answer names a server folder.
    const outside = await expectError(await post(adapters, { name: 'u4', path: join(work, 'nowhere') }), 400, 'invalid_path', /under one of the server's adapter roots/);
    expect(await expectError(await post(adapters, { name: 'u4', path: '../data' }), 400, 'invalid_path', /under one of/)).toEqual(outside);
    const missing = await expectError(await post(adapters, { name: 'u4', path: 'nowhere' }), 400, 'invalid_path', /no adapter folder 'nowhere' under the adapter roots/);
    expect(JSON.stringify([outside, missing])).not.toContain(work);
    await expectError(await post(adapters, { name: 'tiny', path: join(adaptersDir, 'u1') }), 400, 'invalid_name', /base model's name/);
    await expectError(await post(adapters, { path: join(adaptersDir, 'u1') }), 400, 'invalid_name', /name must be/);
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['tiny', 'u1', 'u2']);
  });

  it('/health, /ready and /metrics (requests by route and status, latencies, batches, tokens, adapters)', async () => {
    expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${server.url}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', model: 'tiny', adapters: 2, pending: 0 });
    const response = await fetch(`${server.url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(metric(text, 'pigg_requests_total{route="/v1/chat/completions",status="200"}')).toBeGreaterThan(0);
    expect(metric(text, 'pigg_requests_total{route="/v1/ground",status="400"}')).toBeGreaterThan(0);
    expect(metric(text, 'pigg_requests_total{route="/v1/ground",status="413"}')).toBe(2);
    expect(metric(text, 'pigg_requests_total{route="/v1/ground",status="404"}')).toBe(1);
    expect(metric(text, 'pigg_request_duration_seconds_count{route="/v1/ground"}')).toBeGreaterThan(0);
    for (const series of ['pigg_queue_seconds_count', 'pigg_prefill_seconds_count', 'pigg_decode_seconds_count', 'pigg_vision_seconds_count', 'pigg_generated_tokens_total']) {
      expect(metric(text, series), series).toBeGreaterThan(0);
    }
    expect(metric(text, 'pigg_adapters{where="host"}')).toBe(2);
    expect(metric(text, 'pigg_queue_depth')).toBe(0);
    expect(metric(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    // The host tensor cache has served the model's tensors and keeps no more than its limit.
    expect(metric(text, 'pigg_host_cache_bytes{kind="live"}')).toBeGreaterThan(0);
    expect(metric(text, 'pigg_host_cache_bytes{kind="cached"}')).toBeLessThanOrEqual(metric(text, 'pigg_host_cache_bytes{kind="limit"}'));
  });
});

describe('pigg serve with its defaults (constrained decoding)', () => {
  it('every answer parses, and equals pigg eval --constrain auto --adapter', async () => {
    const server = await serve({ model: base, adapters: adaptersDir, port: 0, grounder: { device: 'cpu', dtype: 'fp32', image: IMAGE, maxNewTokens: MAX_NEW_CONSTRAINED, imageWorkers: 0 } });
    try {
      expect(server.grounder.constrain).toBe('pigg');
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'anything', maxRetries: 0 });
      const answers = await Promise.all(samples.map(async (sample, i) => {
        if (i % 2 === 0) {
          const completion = await client.chat.completions.create({ model: 'u1', messages: chatMessages(sample) });
          return (completion as unknown as { grounding: GroundResult }).grounding;
        }
        const response = await post(`${server.url}/v1/ground`, { image: dataUri(sample), instruction: sample.instruction, user: 'u1' });
        return (await response.json()) as GroundResult;
      }));
      for (const [i, sample] of samples.entries()) {
        const expected = offline['u1-auto']!.get(sample.id)!;
        expect(answers[i]!.parsed, expected.output).toBe(true);
        expect([answers[i]!.grid.x, answers[i]!.grid.y]).toEqual(expected.pred);
      }
      const plain = await client.chat.completions.create({ model: 'u1', messages: chatMessages(samples[3]!) });
      expect(plain.choices[0]!.message.content).toBe(offline['u1-auto']!.get(samples[3]!.id)!.output);
      expect(plain.choices[0]!.finish_reason).toBe('stop'); // the grammar ends every answer with an end token
      // A budget too small for any answer of the grammar is refused up front, streaming or not.
      for (const stream of [false, true]) {
        await expectError(await post(`${server.url}/v1/chat/completions`, { model: 'u1', messages: chatMessages(samples[3]!), max_tokens: 8, stream }),
          400, 'invalid_argument', /cannot hold a complete 'pigg' answer/);
      }
    } finally {
      await server.stop();
    }
  });
});

describe('the slow path: disconnects, a full queue', () => {
  let grounder: Grounder;
  let server: RunningServer;
  /** Every generate call's result (a spy: the real engine runs). */
  const generated: Array<Promise<GenerateResult>> = [];
  let engineCalled: () => void = () => {};

  beforeAll(async () => {
    const metrics = new ServeMetrics();
    grounder = await Grounder.load(base, { device: 'cpu', dtype: 'fp32', image: IMAGE, maxNewTokens: SLOW, imageWorkers: 0, constrain: 'none', maxBatch: 1, onBatch: metrics.onBatch });
    const generate = grounder.model.generate.bind(grounder.model);
    grounder.model.generate = (inputs, options) => {
      const result = generate(inputs, options);
      generated.push(result);
      engineCalled();
      return result;
    };
    server = await startServer({ grounder, port: 0, maxQueue: 2, metrics });
  });

  afterAll(async () => {
    await server?.close();
    await grounder?.[Symbol.asyncDispose]();
  });

  const slowRequest = (sample: Sample, signal?: AbortSignal) =>
    post(`${server.url}/v1/ground`, { image: imageOf(sample).toString('base64'), instruction: sample.instruction }, { signal });

  it('a client that disconnects stops its row in the engine (streaming and not); the server goes on', async () => {
    const sample = samples[0]!;
    // Streaming: disconnect once the first streamed text has arrived (the row is decoding).
    const controller = new AbortController();
    const response = await post(`${server.url}/v1/chat/completions`, { model: 'tiny', messages: chatMessages(sample), stream: true }, { signal: controller.signal });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = response.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toMatch(/^data: \{.*"object":"chat\.completion\.chunk"/);
    controller.abort();
    const streamed = await generated.at(-1)!;
    expect(streamed.aborted).toEqual([true]);
    expect(streamed.tokens[0]!.length).toBeLessThan(SLOW);

    // Not streaming: disconnect once its generate call has started.
    const started = new Promise<void>((done) => (engineCalled = done));
    const plain = new AbortController();
    const pending = slowRequest(sample, plain.signal).catch((error: Error) => error);
    await started;
    plain.abort();
    expect(((await pending) as Error).name).toBe('AbortError');
    const stopped = await generated.at(-1)!;
    expect(stopped.aborted).toEqual([true]);
    expect(stopped.tokens[0]!.length).toBeLessThan(SLOW);
    await vi.waitFor(() => expect(grounder.pending).toBe(0));

    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(metric(text, 'pigg_requests_total{route="/v1/chat/completions",status="499"}')).toBe(1);
    expect(metric(text, 'pigg_requests_total{route="/v1/ground",status="499"}')).toBe(1);
    // The model stays usable.
    const after = await post(`${server.url}/v1/ground`, { image: imageOf(sample).toString('base64'), instruction: sample.instruction, max_new_tokens: 4 });
    expect(((await after.json()) as GroundResult).tokens).toBe(4);
  });

  it('a full queue answers 429 with Retry-After (max queue 2), and serves again once it drains', async () => {
    const sample = samples[1]!;
    const controllers = [new AbortController(), new AbortController()];
    const slow = controllers.map((c) => slowRequest(sample, c.signal).catch((error: Error) => error));
    await vi.waitFor(() => expect(grounder.pending).toBe(2), { timeout: 10_000, interval: 5 });
    const refused = await post(`${server.url}/v1/ground`, { image: imageOf(sample).toString('base64'), instruction: sample.instruction });
    expect(refused.headers.get('retry-after')).toBe('1');
    await expectError(refused, 429, 'queue_full', /the queue is full \(2 requests queued or running, limit 2\)/);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'anything', maxRetries: 0 });
    expect(await client.chat.completions.create({ model: 'tiny', messages: chatMessages(sample) }).catch((error: unknown) => error)).toBeInstanceOf(OpenAI.RateLimitError);

    for (const c of controllers) c.abort();
    for (const result of await Promise.all(slow)) expect((result as Error).name).toBe('AbortError');
    await vi.waitFor(() => expect(grounder.pending).toBe(0));
    const again = await post(`${server.url}/v1/ground`, { image: imageOf(sample).toString('base64'), instruction: sample.instruction, max_new_tokens: 4 });
    expect(again.status).toBe(200);
  });
});

describe('pigg serve (the CLI)', () => {
  it('SIGTERM answers the requests in flight, 503 to new ones, then exits 0', async () => {
    const child: ChildProcess = spawn(process.execPath, [CLI, 'serve', '--model', base, '--adapters', adaptersDir, '--port', '0', '--constrain', 'none',
      '--max-new-tokens', String(SLOW), '--max-batch', '1', '--device', 'cpu', ...engineFlags], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    try {
      await vi.waitFor(() => expect(stderr).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/), { timeout: 60_000, interval: 50 });
      expect(stderr).toMatch(/adapter u1 from .*u1\n/);
      expect(stderr).toMatch(/2 adapter\(s\)/);
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)![1]!;
      const sample = samples[2]!;
      const body = { image: imageOf(sample).toString('base64'), instruction: sample.instruction };
      const inFlight = [post(`${url}/v1/ground`, body), post(`${url}/v1/ground`, { ...body, user: 'u1' })];
      await vi.waitFor(async () => expect(((await (await fetch(`${url}/ready`)).json()) as { pending: number }).pending).toBe(2), { timeout: 10_000, interval: 5 });

      child.kill('SIGTERM');
      await vi.waitFor(() => expect(stderr).toMatch(/SIGTERM: draining 2 request\(s\)/), { timeout: 10_000, interval: 5 });
      await expectError(await post(`${url}/v1/ground`, body), 503, 'shutting_down', /shutting down/);
      const answers = await Promise.all(inFlight);
      expect(answers.map((a) => a.status)).toEqual([200, 200]);
      const [plain, adapted] = (await Promise.all(answers.map((a) => a.json()))) as GroundResult[];
      expect(plain!.tokens).toBe(SLOW);
      expect(adapted!.adapter).toBe('u1');
      expect(await exited).toBe(0);
      expect(stderr).toMatch(/stopped\n$/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
