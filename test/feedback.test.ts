// The feedback store (lib/personalize/store.ts) without a model: each user's folder is a pigg dataset, appends are
// durable and ordered, requests are checked field by field, a torn last line is cut off on open, and a writer
// killed with SIGKILL at arbitrary moments never leaves a line that does not parse nor loses an acknowledged one.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDataset, readManifest } from '../lib/data/manifest.js';
import { appendLineDurable, repairTail } from '../lib/personalize/durable.js';
import { FeedbackStore, type FeedbackError, type FeedbackInput } from '../lib/personalize/store.js';

const work = mkdtempSync(join(tmpdir(), 'pigg-feedback-'));
const helper = join(resolve(import.meta.dirname), 'helpers', 'feedback-append.mjs');
let png: Buffer;
let jpeg: Buffer;
const pngFile = join(work, 'screen.png');

beforeAll(async () => {
  png = await sharp({ create: { width: 64, height: 128, channels: 3, background: { r: 20, g: 120, b: 220 } } }).png().toBuffer();
  jpeg = await sharp({ create: { width: 90, height: 40, channels: 3, background: { r: 200, g: 10, b: 10 } } }).jpeg().toBuffer();
  writeFileSync(pngFile, png);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

async function rejection(promise: Promise<unknown>): Promise<FeedbackError> {
  try {
    await promise;
  } catch (error) {
    return error as FeedbackError;
  }
  throw new Error('expected a rejection');
}

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Every line of the user's manifest parses and validates, and every image is there with the bytes it was sent. */
async function checkUserDir(root: string, user: string): Promise<number> {
  const dir = join(root, user);
  const samples = await readManifest(join(dir, 'manifest.jsonl'));
  samples.forEach((sample, i) => {
    expect(sample.id).toBe(`feedback/${user}/${String(i).padStart(6, '0')}`);
    const image = readFileSync(join(dir, sample.image));
    expect(sha(image)).toBe(sample.meta!.image_sha256);
  });
  return samples.length;
}

describe('feedback store', () => {
  it('appends samples as a pigg dataset per user (images as sent, lines in order)', async () => {
    const root = join(work, 'basic');
    const { store } = await FeedbackStore.open(root);
    const first = await store.append({ user: 'alice', image: png, instruction: 'Open Wi-Fi settings', tap: { x: 10.5, y: 127 } });
    expect(first).toMatchObject({ index: 0, count: 1 });
    const second = await store.append({ user: 'alice', image: pngFile, instruction: 'Tap Send', tap: { x: 0, y: 0 }, referring: 'Send' });
    const other = await store.append({ user: 'bob.2', image: jpeg, instruction: 'Close', tap: { x: 89, y: 39 } });
    expect([second.index, other.index]).toEqual([1, 0]);

    const alice = await readDataset(join(root, 'alice'), { checkImages: true });
    expect(alice.info).toMatchObject({ schema: 'gg-sample/1', source: 'feedback', users: ['alice'] });
    expect(alice.samples.map((s) => [s.id, s.image, s.width, s.height, s.instruction, s.referring, s.target])).toEqual([
      ['feedback/alice/000000', 'images/000000.png', 64, 128, 'Open Wi-Fi settings', null, { x: 10.5, y: 127 }],
      ['feedback/alice/000001', 'images/000001.png', 64, 128, 'Tap Send', 'Send', { x: 0, y: 0 }],
    ]);
    expect(readFileSync(join(root, 'alice', 'images', '000000.png')).equals(png)).toBe(true);
    const bob = await readDataset(join(root, 'bob.2'), { checkImages: true });
    expect(bob.samples[0]).toMatchObject({ image: 'images/000000.jpg', width: 90, height: 40, user: 'bob.2', source: 'feedback', action_type: 'click' });

    // Concurrent appends of one user get consecutive indices and lines in that order.
    const many = await Promise.all(Array.from({ length: 12 }, (_, i) => store.append({ user: 'alice', image: png, instruction: `step ${i}`, tap: { x: i, y: i } })));
    expect(many.map((m) => m.index)).toEqual(Array.from({ length: 12 }, (_, i) => i + 2));
    expect((await readManifest(join(root, 'alice', 'manifest.jsonl'))).slice(2).map((s) => s.instruction)).toEqual(many.map((_, i) => `step ${i}`));
    expect(store.count('alice')).toBe(14);

    // Reopened: the same samples, and appends continue after them.
    const { store: again, repaired } = await FeedbackStore.open(root);
    expect(repaired).toEqual({});
    expect(again.userIds()).toEqual(['alice', 'bob.2']);
    expect(again.samples('alice')).toEqual(store.samples('alice'));
    expect((await again.append({ user: 'alice', image: png, instruction: 'again', tap: { x: 1, y: 1 } })).index).toBe(14);
    expect(await checkUserDir(root, 'alice')).toBe(15);
  });

  it('rejects bad requests with the field and the reason, and writes nothing for them', async () => {
    const root = join(work, 'invalid');
    const { store } = await FeedbackStore.open(root);
    const good: FeedbackInput = { user: 'u1', image: png, instruction: 'Open settings', tap: { x: 5, y: 5 } };
    const cases: Array<[Partial<FeedbackInput> & Record<string, unknown>, string, string | RegExp]> = [
      [{ tap: { x: 64, y: 5 } }, 'tap.x', 'tap.x 64 is outside the image: its width is 64 pixels (0 <= x < 64)'],
      [{ tap: { x: 5, y: 128.5 } }, 'tap.y', 'tap.y 128.5 is outside the image: its height is 128 pixels (0 <= y < 128)'],
      [{ tap: { x: -1, y: 5 } }, 'tap.x', /tap\.x -1 is outside the image/],
      [{ tap: { x: Number.NaN, y: 5 } }, 'tap.x', /tap\.x must be a finite number/],
      [{ tap: { x: '5', y: 5 } as never }, 'tap.x', 'tap.x must be a finite number (pixels), got "5"'],
      [{ tap: [5, 5] as never }, 'tap', 'tap must be an object {x, y} in pixels of the image'],
      [{ tap: undefined }, 'tap', /tap must be an object/],
      [{ user: '' }, 'user', /user must be a non-empty string/],
      [{ user: '../etc' }, 'user', /may hold only letters, digits and _ \. @ -/],
      [{ user: 'a~candidate' }, 'user', /may hold only/],
      [{ user: 'x'.repeat(65) }, 'user', /at most 64/],
      [{ instruction: '  ' }, 'instruction', 'instruction must be a non-empty string'],
      [{ instruction: 'x'.repeat(2001) }, 'instruction', 'the instruction is 2001 characters, over the limit of 2000'],
      [{ referring: 'two\nlines' }, 'referring', /referring must be null or a non-empty string/],
      [{ image: Buffer.alloc(0) }, 'image', 'the image is empty'],
      [{ image: Buffer.from('not an image at all') }, 'image', /not PNG, JPEG, WebP/],
      [{ image: png.subarray(0, 40) }, 'image', /cannot decode image/],
      [{ image: join(work, 'missing.png') }, 'image', /cannot read the image file .*missing\.png/],
      [{ image: 42 as never }, 'image', /image must be a file path or the bytes/],
    ];
    for (const [change, param, message] of cases) {
      const error = await rejection(store.append({ ...good, ...change } as FeedbackInput));
      expect(error.param, JSON.stringify(change).slice(0, 80)).toBe(param);
      expect(error.code).toBe(param === 'image' && !/must be a file path/.test(error.message) ? 'INVALID_IMAGE' : 'INVALID_ARGUMENT');
      if (typeof message === 'string') expect(error.message).toBe(message);
      else expect(error.message).toMatch(message);
    }
    expect(store.count('u1')).toBe(0);
    expect(existsSync(join(root, 'u1'))).toBe(false);
    expect((await store.append(good)).index).toBe(0);
  });

  it('cuts a torn last line off when opened and appends after it', async () => {
    const root = join(work, 'torn');
    const { store } = await FeedbackStore.open(root);
    for (let i = 0; i < 3; i++) await store.append({ user: 'u', image: png, instruction: `i${i}`, tap: { x: i, y: i } });
    const manifest = join(root, 'u', 'manifest.jsonl');
    const whole = readFileSync(manifest, 'utf8');
    // A crash in the middle of the fourth line's write (its image already renamed into place).
    appendFileSync(manifest, whole.split('\n')[0]!.slice(0, 37));
    writeFileSync(join(root, 'u', 'images', '.pigg-tmp-000004.png-1-abcd'), 'half an image');
    const { store: reopened, repaired } = await FeedbackStore.open(root);
    expect(repaired).toEqual({ u: 37 });
    expect(readFileSync(manifest, 'utf8')).toBe(whole);
    expect(readdirSync(join(root, 'u', 'images')).sort()).toEqual(['000000.png', '000001.png', '000002.png']);
    expect(reopened.count('u')).toBe(3);
    await reopened.append({ user: 'u', image: jpeg, instruction: 'i3', tap: { x: 3, y: 3 } });
    expect(await checkUserDir(root, 'u')).toBe(4);

    // The primitives: a file of only a torn line becomes empty; a whole file stays as it is.
    const file = join(work, 'lines.jsonl');
    writeFileSync(file, '{"a":');
    expect(await repairTail(file)).toBe(5);
    expect(statSync(file).size).toBe(0);
    await appendLineDurable(file, '{"a":1}');
    expect(await repairTail(file)).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('{"a":1}\n');
    await expect(appendLineDurable(file, 'two\nlines')).rejects.toThrow('must not hold a newline');
  });

  it('survives kill -9 of a writer at arbitrary moments: every acknowledged sample is there and every line parses', async () => {
    const root = join(work, 'killed');
    let acknowledged = 0;
    // Kill points: after some acknowledgements, then a little later (likely inside the next append's writes).
    const kills = [{ acks: 1, delayMs: 0 }, { acks: 7, delayMs: 1 }, { acks: 13, delayMs: 3 }, { acks: 5, delayMs: 0 }, { acks: 21, delayMs: 2 }, { acks: 9, delayMs: 5 }];
    for (const { acks, delayMs } of kills) {
      const child = spawn(process.execPath, [helper, root, 'k', pngFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      let seen = 0;
      let killed = false;
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      const closed = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        seen = out.split('\n').filter((line) => line.startsWith('ack ')).length;
        if (!killed && seen >= acks) {
          killed = true;
          setTimeout(() => child.kill('SIGKILL'), delayMs);
        }
      });
      const code = await closed;
      expect(killed, `the writer exited on its own (code ${code}): ${err}`).toBe(true);
      // All of stdout has been read (close): the last ack is the count the writer had made durable.
      const lastAck = Number(out.trim().split('\n').filter((line) => line.startsWith('ack ')).at(-1)!.slice(4));
      expect(lastAck).toBeGreaterThan(acknowledged);
      acknowledged = lastAck;

      const { store } = await FeedbackStore.open(root);
      const count = store.count('k');
      expect([acknowledged, acknowledged + 1]).toContain(count);
      expect(await checkUserDir(root, 'k')).toBe(count);
      expect(readFileSync(join(root, 'k', 'manifest.jsonl'), 'utf8').endsWith('\n')).toBe(true);
      acknowledged = count;
    }
    expect(acknowledged).toBeGreaterThanOrEqual(kills.reduce((sum, k) => sum + k.acks, 0));
  });
});
