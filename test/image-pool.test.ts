// Image preprocessing on worker threads (ImagePool) and the prefetching of batches ahead of the model.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImagePool } from '../lib/processor/image-pool.js';
import { PIGG_PIXELS, processImage } from '../lib/processor/image.js';
import { readSafetensors } from '../lib/safetensors.js';
import { prefetched } from '../lib/util/prefetch.js';

const DIR = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/preprocess/', import.meta.url));
const expected = readSafetensors(join(DIR, 'expected.safetensors'));
const CASES: Array<{ name: string; source_png: string; has_pixel_values: boolean; image_grid_thw: number[]; processor: { min_pixels: number; max_pixels: number } }> =
  JSON.parse(readFileSync(join(DIR, 'preprocess.json'), 'utf8')).cases;
const WITH_PIXELS = CASES.filter((c) => c.has_pixel_values);
const scratch = mkdtempSync(join(tmpdir(), 'pigg-pool-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const PHONE = join(scratch, 'phone.png');
beforeAll(async () => {
  const noise = Buffer.alloc(1080 * 2400 * 3);
  for (let i = 0, state = 7; i < noise.length; i++) noise[i] = (state = (state * 1103515245 + 12345) % 2147483648) >> 23;
  await sharp(noise, { raw: { width: 1080, height: 2400, channels: 3 } }).png().toFile(PHONE);
});

describe('ImagePool', () => {
  for (const size of [2, 0]) {
    it(`${size ? `${size} workers` : 'the main thread'}: every fixture image, all at once, equals processImage and the expected pixel_values bit for bit`, async () => {
      const pool = new ImagePool(size);
      try {
        expect(CASES.length).toBe(4);
        const optionsOf = (c: (typeof CASES)[number]) => ({ minPixels: c.processor.min_pixels, maxPixels: c.processor.max_pixels });
        const images = await Promise.all(CASES.map((c) => pool.process(join(DIR, c.source_png), optionsOf(c))));
        for (const [i, c] of CASES.entries()) {
          const direct = await processImage(join(DIR, c.source_png), optionsOf(c));
          expect(images[i].gridThw, c.name).toEqual(c.image_grid_thw);
          expect(images[i].pixelValues).toBeInstanceOf(Float32Array);
          expect(Buffer.from(images[i].pixelValues.buffer).equals(Buffer.from(direct.pixelValues.buffer)), c.name).toBe(true);
          const want = expected.get(`${c.name}.pixel_values`);
          if (want) expect(Buffer.from(images[i].pixelValues.buffer).equals(Buffer.from((want.data as Float32Array).buffer)), c.name).toBe(true);
        }
        expect(CASES.filter((c) => c.has_pixel_values).length).toBe(2);
        // A phone-sized screenshot at PIGG's pixel limits (1080×2400 → 672×1472, 966 image tokens).
        const phone = await pool.process(PHONE, PIGG_PIXELS);
        expect(phone.numImageTokens).toBe(966);
        expect(Buffer.from(phone.pixelValues.buffer).equals(Buffer.from((await processImage(PHONE, PIGG_PIXELS)).pixelValues.buffer))).toBe(true);
        // Encoded bytes in shared memory (as pigg serve decodes request images): the same pixels, and the caller
        // keeps its bytes.
        const file = readFileSync(PHONE);
        const shared = Buffer.from(new SharedArrayBuffer(file.length));
        file.copy(shared);
        const fromShared = await pool.process(shared, PIGG_PIXELS);
        expect(Buffer.from(fromShared.pixelValues.buffer).equals(Buffer.from(phone.pixelValues.buffer))).toBe(true);
        expect(shared.equals(file)).toBe(true);
      } finally {
        await pool.close();
      }
    });
  }

  it('a missing or corrupt image rejects its own job with the file named; the pool goes on', async () => {
    const pool = new ImagePool(2);
    try {
      const corrupt = join(scratch, 'corrupt.png');
      writeFileSync(corrupt, Buffer.from('\x89PNG\r\n\x1a\nnot really'));
      const good = WITH_PIXELS[0];
      const options = { minPixels: good.processor.min_pixels, maxPixels: good.processor.max_pixels };
      const results = await Promise.allSettled([
        pool.process(join(scratch, 'nope.png'), options),
        pool.process(corrupt, options),
        pool.process(join(DIR, good.source_png), options),
      ]);
      expect(results[0]).toMatchObject({ status: 'rejected', reason: { message: `image not found: ${join(scratch, 'nope.png')}` } });
      expect(results[1].status).toBe('rejected');
      expect((results[1] as PromiseRejectedResult).reason.message).toMatch(new RegExp(`^cannot decode image ${corrupt}: `));
      expect(results[2].status).toBe('fulfilled');
      expect((await pool.process(join(DIR, good.source_png), options)).gridThw).toEqual(good.image_grid_thw);
    } finally {
      await pool.close();
    }
  });

  it('rejects a bad size and work after close', async () => {
    expect(() => new ImagePool(-1)).toThrow('image workers must be a non-negative integer, got -1');
    expect(() => new ImagePool(1.5)).toThrow('image workers must be a non-negative integer, got 1.5');
    const pool = new ImagePool(1);
    await pool.close();
    await expect(pool.process(join(DIR, WITH_PIXELS[0].source_png), {})).rejects.toThrow('the image pool is closed');
  });
});

describe('prefetched', () => {
  it('yields in order with at most `ahead` items made beyond the one consumed', async () => {
    const started: number[] = [];
    let consumed = -1;
    const make = async (i: number) => {
      started.push(i);
      expect(i).toBeLessThanOrEqual(consumed + 2 + 1); // the current one plus two ahead
      await new Promise((resolve) => setTimeout(resolve, (7 - i) * 2)); // later items finish first
      return i * 10;
    };
    const out: number[] = [];
    for await (const value of prefetched(7, make, 2)) {
      consumed++;
      out.push(value);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(out).toEqual([0, 10, 20, 30, 40, 50, 60]);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it("a failure surfaces at its own position, after the earlier items, and is never an unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const out: number[] = [];
      const run = async () => {
        for await (const value of prefetched(5, async (i) => {
          if (i === 2) throw new Error('sample 2 is broken');
          return i;
        }, 3)) {
          out.push(value);
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      };
      await expect(run()).rejects.toThrow('sample 2 is broken');
      expect(out).toEqual([0, 1]);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
