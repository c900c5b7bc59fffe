// The image processor PIGG ran (transformers 4.57.6's fast Qwen2VLImageProcessorFast): the pixel limits it applied
// and its torchvision resize, against test/fixtures/torchvision-resize (scripts/torchvision-resize-fixture.py).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PIGG_EXACT } from '../lib/processor/inputs.js';
import { decodeImage, PIGG_EFFECTIVE_PIXELS, PIGG_PIXELS, processImage, type RgbImage } from '../lib/processor/image.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/torchvision-resize/expected.json', import.meta.url));
const PREPROCESS = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/preprocess/', import.meta.url));

interface Case {
  name: string;
  source: string;
  minPixels: number;
  maxPixels: number;
  grid: [number, number, number];
  sha256: string;
  levelSum: number;
  cropRows: number;
  crop: string;
}
const expected = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { cases: Case[]; quirk: { max_pixels: number; grid: Record<string, number[]> } };

/** The script's test pattern: channel c of pixel (x, y) is (3x + 7y + 50c + (xy >> 4)) mod 256. */
function pattern(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = (x * 3 + y * 7 + c * 50 + Math.floor((x * y) / 16)) % 256;
    }
  }
  return { width, height, data };
}

async function source(name: string): Promise<RgbImage> {
  const match = /^pattern:(\d+)x(\d+)$/.exec(name);
  return match ? pattern(Number(match[1]), Number(match[2])) : decodeImage(PREPROCESS + name);
}

/** Pixel levels of pixel_values (first temporal frame of each row): round(v * 127.5 + 127.5). */
function levels(pixelValues: Float32Array, rows: number): Uint8Array {
  const out = new Uint8Array(rows * 768);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 256; i++) out[r * 768 + c * 256 + i] = Math.round(pixelValues[r * 1536 + c * 512 + i]! * 127.5 + 127.5);
    }
  }
  return out;
}

describe('the image processor PIGG ran', () => {
  it("PIGG's settings: its max_pixels is ignored by the fast processor, a 1080x2400 screenshot is grid [1, 150, 68] (2550 image tokens)", async () => {
    expect(expected.quirk.max_pixels).toBe(PIGG_PIXELS.maxPixels);
    expect(expected.quirk.grid).toEqual({ Qwen2VLImageProcessorFast: [1, 150, 68], Qwen2VLImageProcessor: [1, 92, 42] });
    const screenshot = await processImage(pattern(1080, 2400), PIGG_EXACT.image);
    expect(screenshot.gridThw).toEqual([1, 150, 68]);
    expect(screenshot.numImageTokens).toBe(2550);
    expect(PIGG_EXACT.image).toEqual({ ...PIGG_EFFECTIVE_PIXELS, resampler: 'torchvision' });
    expect((await processImage(pattern(1080, 2400), PIGG_PIXELS)).numImageTokens).toBe(966); // what PIGG intended
  });

  it.each(expected.cases)('$name: pixel_values equal the fast processor (torchvision resize, fused normalize)', async (c) => {
    const image = await source(c.source);
    const processed = await processImage(image, { minPixels: c.minPixels, maxPixels: c.maxPixels, resampler: 'torchvision' });
    expect(processed.gridThw).toEqual(c.grid);
    const ours = levels(processed.pixelValues, processed.pixelValues.length / 1536);
    // The crop and the level sum locate a difference; within one level is the bound, the hash says bit-exact.
    const crop = Buffer.from(c.crop, 'base64');
    let worst = 0;
    for (let i = 0; i < crop.length; i++) worst = Math.max(worst, Math.abs(crop[i]! - ours[i]!));
    expect(worst).toBeLessThanOrEqual(1);
    expect(Math.abs(ours.reduce((a, b) => a + b, 0) * 2 - c.levelSum)).toBeLessThanOrEqual(ours.length * 2);
    const bytes = Buffer.from(processed.pixelValues.buffer, processed.pixelValues.byteOffset, processed.pixelValues.byteLength);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(c.sha256);
  });

  it("Pillow's resize (the slow processor) differs from torchvision's on the same image", async () => {
    const image = await source('synthetic_317x233.png');
    const torch = await processImage(image, { resampler: 'torchvision' });
    const pillow = await processImage(image, { resampler: 'pillow' });
    const a = levels(torch.pixelValues, torch.pixelValues.length / 1536);
    const b = levels(pillow.pixelValues, pillow.pixelValues.length / 1536);
    let differ = 0;
    let worst = 0;
    a.forEach((v, i) => {
      if (v !== b[i]) differ++;
      worst = Math.max(worst, Math.abs(v - b[i]!));
    });
    expect(differ).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(2);
  });
});
