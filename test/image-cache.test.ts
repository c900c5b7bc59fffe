// The training run's image cache (lib/processor/image-cache.ts): the same pixels as processing again, each file
// processed once per run, least recently used out past its byte bound, bytes sources and failures never remembered.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedImages } from '../lib/processor/image-cache.js';
import { processImage, type ImageProcessorOptions } from '../lib/processor/image.js';
import type { ImageProcessor } from '../lib/processor/image-pool.js';

const OPTIONS: ImageProcessorOptions = { minPixels: 4096, maxPixels: 16384 };
let root: string;
const files: string[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'pigg-image-cache-'));
  for (const [i, colour] of ['#d33', '#3d3', '#33d'].entries()) {
    const file = join(root, `screen-${i}.png`);
    await sharp({ create: { width: 270, height: 600, channels: 3, background: colour } }).png().toFile(file);
    files.push(file);
  }
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function counting(): { images: ImageProcessor; calls: string[] } {
  const calls: string[] = [];
  return { calls, images: (source, options) => { calls.push(typeof source === 'string' ? source : 'bytes'); return processImage(source, options); } };
}

describe('cachedImages', () => {
  it('returns the pixels processImage makes, processing each file once', async () => {
    const { images, calls } = counting();
    const cached = cachedImages(images);
    const first = await cached(files[0]!, OPTIONS);
    const again = await cached(files[0]!, OPTIONS);
    const fresh = await processImage(files[0]!, OPTIONS);
    expect(again).toBe(first);
    expect(first.gridThw).toEqual(fresh.gridThw);
    expect(Buffer.from(first.pixelValues.buffer).equals(Buffer.from(fresh.pixelValues.buffer))).toBe(true);
    expect(calls).toEqual([files[0]]);
    // Other options are another image.
    const larger = await cached(files[0]!, { minPixels: 4096, maxPixels: 65536 });
    expect(larger.numImageTokens).toBeGreaterThan(first.numImageTokens);
    expect(calls).toHaveLength(2);
  });

  it('drops the least recently used past its byte bound', async () => {
    const { images, calls } = counting();
    const one = (await processImage(files[0]!, OPTIONS)).pixelValues.byteLength;
    const cached = cachedImages(images, 2 * one); // room for two screens
    await cached(files[0]!, OPTIONS);
    await cached(files[1]!, OPTIONS);
    await cached(files[0]!, OPTIONS); // 0 is now the most recent
    await cached(files[2]!, OPTIONS); // evicts 1
    await cached(files[0]!, OPTIONS);
    await cached(files[1]!, OPTIONS);
    expect(calls).toEqual([files[0], files[1], files[2], files[1]]);
  });

  it('does not remember byte sources or failures', async () => {
    const { images, calls } = counting();
    const cached = cachedImages(images);
    const bytes = new Uint8Array(await sharp(files[1]!).png().toBuffer());
    await cached(bytes, OPTIONS);
    await cached(bytes, OPTIONS);
    expect(calls).toEqual(['bytes', 'bytes']);
    const missing = join(root, 'missing.png');
    await expect(cached(missing, OPTIONS)).rejects.toThrow(/missing\.png/);
    await expect(cached(missing, OPTIONS)).rejects.toThrow(/missing\.png/);
    expect(calls.filter((c) => c === missing)).toHaveLength(2);
  });
});
