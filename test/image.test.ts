import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import sharp from 'sharp';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { register } from '../lib/cli/preprocess.js';
import {
  decodeImage,
  patchify,
  PIGG_PIXELS,
  processImage,
  QWEN3_VL_PIXELS,
  resizePillowBicubic,
  resizeSharp,
  smartResize,
  type RgbImage,
} from '../lib/processor/image.js';
import { roundHalfEven } from '../lib/data/metrics.js';
import { readSafetensors } from '../lib/safetensors.js';

const DIR = fileURLToPath(new URL('./fixtures/qwen3vl-tiny/preprocess/', import.meta.url));
const expected = readSafetensors(join(DIR, 'expected.safetensors'));
interface FixtureCase {
  name: string;
  source_png: string;
  source_tensor: string;
  source_size_hw: [number, number];
  resized_size_hw: [number, number];
  image_grid_thw: [number, number, number];
  n_merged_tokens: number;
  has_pixel_values: boolean;
  processor: { min_pixels: number; max_pixels: number };
}
const CASES: FixtureCase[] = JSON.parse(readFileSync(join(DIR, 'preprocess.json'), 'utf8')).cases;
const scratch = mkdtempSync(join(tmpdir(), 'pigg-image-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function u8(name: string): Uint8Array {
  return expected.get(name)!.data as Uint8Array;
}

function diffStats(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / a.length };
}

function resizedImage(c: FixtureCase): RgbImage {
  return { height: c.resized_size_hw[0], width: c.resized_size_hw[1], data: u8(`${c.name}.resized_rgb_u8`) };
}

describe('smartResize (spec §6.2)', () => {
  it('rounds half to even like Python round()', () => {
    expect([0.5, 1.5, 2.5, 32.5, 33.5, -0.5, -1.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([0, 2, 2, 32, 34, 0, -2, 2, 3]);
  });

  it.each([
    ['1040 wide rounds down to 1024 (32.5 → 32)', 1040, 1040, QWEN3_VL_PIXELS, [1024, 1024]],
    ['65x65 scales up to 256 (ceil of 7.999999999999999)', 65, 65, QWEN3_VL_PIXELS, [256, 256]],
    ['99x99 scales up to 256', 99, 99, QWEN3_VL_PIXELS, [256, 256]],
    ['1080x2400 phone screenshot', 2400, 1080, QWEN3_VL_PIXELS, [2400, 1088]],
    ['1920x1080', 1080, 1920, QWEN3_VL_PIXELS, [1088, 1920]],
    ['200x200 below min_pixels', 200, 200, QWEN3_VL_PIXELS, [256, 256]],
    ['1080x2400 with PIGG max_pixels', 2400, 1080, PIGG_PIXELS, [1472, 672]],
    ['thin image keeps each side >= 32', 6000, 40, { minPixels: 1024, maxPixels: 4096 }, [768, 32]],
  ] as const)('%s', (_, h, w, limits, out) => {
    expect(smartResize(h, w, 32, limits.minPixels, limits.maxPixels)).toEqual(out);
  });

  it('rejects an aspect ratio above 200 and non-integer sizes', () => {
    expect(() => smartResize(10, 2010)).toThrow(/aspect ratio must be smaller than 200/);
    expect(() => smartResize(0, 10)).toThrow(/positive integers/);
  });

  it.each(CASES.map((c) => [c.name, c] as const))('%s: resized size and grid', (_, c) => {
    const [h, w] = c.source_size_hw;
    expect(smartResize(h, w, 32, c.processor.min_pixels, c.processor.max_pixels)).toEqual(c.resized_size_hw);
    expect(Array.from(expected.get(`${c.name}.image_grid_thw`)!.data as BigInt64Array, Number)).toEqual(c.image_grid_thw);
  });
});

describe('decoding', () => {
  it.each(CASES.map((c) => [c.source_png, c] as const))('%s decodes to the stored RGB bytes', async (_, c) => {
    const image = await decodeImage(join(DIR, c.source_png));
    expect([image.height, image.width]).toEqual(c.source_size_hw);
    expect(Buffer.from(image.data).equals(Buffer.from(u8(c.source_tensor)))).toBe(true);
  });

  it('drops alpha like PIL convert("RGB"), or composites over white like qwen-vl-utils', async () => {
    const path = join(scratch, 'rgba.png');
    await sharp(Buffer.from([255, 0, 0, 128, 0, 255, 0, 0, 0, 0, 255, 255, 10, 20, 30, 1]), { raw: { width: 2, height: 2, channels: 4 } }).png().toFile(path);
    expect(Array.from((await decodeImage(path)).data)).toEqual([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    expect(Array.from((await decodeImage(path, 'white')).data)).toEqual([255, 127, 127, 255, 255, 255, 0, 0, 255, 254, 254, 254]);
  });

  it('expands grayscale to RGB and applies the EXIF orientation', async () => {
    const gray = join(scratch, 'gray.png');
    await sharp(Buffer.from([0, 100, 200, 255, 7, 9]), { raw: { width: 3, height: 2, channels: 1 } }).png().toFile(gray);
    expect(Array.from((await decodeImage(gray)).data.subarray(0, 6))).toEqual([0, 0, 0, 100, 100, 100]);
    const rotated = join(scratch, 'rotated.png');
    await sharp(Buffer.alloc(4 * 2 * 3, 50), { raw: { width: 4, height: 2, channels: 3 } }).withMetadata({ orientation: 6 }).png().toFile(rotated);
    const image = await decodeImage(rotated);
    expect([image.width, image.height]).toEqual([2, 4]);
  });

  it('names the file when it is missing or not an image', async () => {
    const bad = join(scratch, 'bad.png');
    writeFileSync(bad, 'not an image');
    await expect(decodeImage(join(scratch, 'missing.png'))).rejects.toThrow(`image not found: ${join(scratch, 'missing.png')}`);
    await expect(decodeImage(bad)).rejects.toThrow(`cannot decode image ${bad}:`);
  });
});

describe('resampling against the PIL fixture', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s: the Pillow-compatible bicubic is bit-exact', (_, c) => {
    const source: RgbImage = { height: c.source_size_hw[0], width: c.source_size_hw[1], data: u8(c.source_tensor) };
    const out = resizePillowBicubic(source, ...c.resized_size_hw);
    expect([out.height, out.width]).toEqual(c.resized_size_hw);
    expect(diffStats(out.data, u8(`${c.name}.resized_rgb_u8`))).toEqual({ max: 0, mean: 0 });
  });

  it('sharp (libvips) is only close on the smooth image', async () => {
    // Measured with sharp 0.35.5: p1 max 134 / mean 6.59, p2 61 / 2.39, p3 10 / 0.12, p4 5 / 1.32 levels.
    const c = CASES.find((x) => x.name === 'p4_smooth')!;
    const out = await resizeSharp({ height: c.source_size_hw[0], width: c.source_size_hw[1], data: u8(c.source_tensor) }, ...c.resized_size_hw);
    const stats = diffStats(out.data, u8(`${c.name}.resized_rgb_u8`));
    expect(stats.max).toBeLessThanOrEqual(8);
    expect(stats.mean).toBeLessThan(2);
  });

  it('leaves the image untouched when the size already matches', () => {
    const image: RgbImage = { width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) };
    expect(Array.from(resizePillowBicubic(image, 1, 2).data)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('resizes a 1080x2400 screenshot to the smart-resize size, deterministically', () => {
    // Its speed is measured in bench/pipeline.mjs, never asserted here.
    const big: RgbImage = { width: 1080, height: 2400, data: new Uint8Array(1080 * 2400 * 3).map((_, i) => (i * 7919) & 255) };
    for (const limits of [QWEN3_VL_PIXELS, PIGG_PIXELS]) {
      const [h, w] = smartResize(2400, 1080, 32, limits.minPixels, limits.maxPixels);
      const first = resizePillowBicubic(big, h, w);
      expect([first.width, first.height, first.data.length]).toEqual([w, h, w * h * 3]);
      expect(Buffer.from(resizePillowBicubic(big, h, w).data).equals(Buffer.from(first.data))).toBe(true);
    }
  });
});

describe('pixel_values', () => {
  it('normalisation and patch flattening of p1 are exact given its resized image', () => {
    const c = CASES.find((x) => x.name === 'p1_round')!;
    const { pixelValues, gridThw } = patchify(resizedImage(c));
    const want = expected.get('p1_round.pixel_values')!;
    expect(want.shape).toEqual([280, 1536]);
    expect(gridThw).toEqual([1, 14, 20]);
    expect(Buffer.from(pixelValues.buffer).equals(Buffer.from((want.data as Float32Array).buffer))).toBe(true);
  });

  it.each(CASES.filter((c) => c.has_pixel_values).map((c) => [c.name, c] as const))('%s: processImage from the PNG equals the expected pixel_values', async (_, c) => {
    const out = await processImage(join(DIR, c.source_png), { minPixels: c.processor.min_pixels, maxPixels: c.processor.max_pixels });
    const want = expected.get(`${c.name}.pixel_values`)!;
    expect(out.gridThw).toEqual(c.image_grid_thw);
    expect(out.numImageTokens).toBe(c.n_merged_tokens);
    expect([out.resizedSize.height, out.resizedSize.width]).toEqual(c.resized_size_hw);
    expect(out.pixelValues.length).toBe(want.shape[0] * want.shape[1]);
    expect(Buffer.from(out.pixelValues.buffer).equals(Buffer.from((want.data as Float32Array).buffer))).toBe(true);
  });

  it.each(CASES.filter((c) => !c.has_pixel_values).map((c) => [c.name, c] as const))('%s: processImage equals patchify of the PIL-resized image', async (_, c) => {
    const out = await processImage(join(DIR, c.source_png), { minPixels: c.processor.min_pixels, maxPixels: c.processor.max_pixels });
    expect(out.gridThw).toEqual(c.image_grid_thw);
    expect(out.numImageTokens).toBe(c.n_merged_tokens);
    expect(Buffer.from(out.pixelValues.buffer).equals(Buffer.from(patchify(resizedImage(c)).pixelValues.buffer))).toBe(true);
  });

  it('lays rows out as 2x2 merge blocks and values as (channel, frame, py, px) (spec §3.1)', () => {
    // 64x96 image whose R = x, G = y, B = 7.
    const width = 96;
    const height = 64;
    const data = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set([x, y, 7], (y * width + x) * 3);
    const { pixelValues, gridThw } = patchify({ width, height, data });
    expect(gridThw).toEqual([1, 4, 6]);
    const level = (v: number) => Math.round((v * 0.5 + 0.5) * 255);
    for (const k of [0, 1, 2, 3, 4, 5, 13, 23]) {
      const inCol = k % 2;
      const inRow = Math.floor(k / 2) % 2;
      const blockCol = Math.floor(k / 4) % 3;
      const blockRow = Math.floor(k / 12);
      const row = 2 * blockRow + inRow;
      const col = 2 * blockCol + inCol;
      for (const [c, f, py, px] of [[0, 0, 0, 0], [0, 1, 3, 5], [1, 0, 15, 2], [1, 1, 9, 15], [2, 1, 4, 4]]) {
        const value = pixelValues[k * 1536 + c * 512 + f * 256 + py * 16 + px];
        expect(level(value)).toBe([col * 16 + px, row * 16 + py, 7][c]);
      }
    }
  });

  it('rejects sizes that are not multiples of 32', () => {
    expect(() => patchify({ width: 48, height: 32, data: new Uint8Array(48 * 32 * 3) })).toThrow('image size 48x32 is not a multiple of 32');
  });
});

describe('pigg preprocess', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  async function run(args: string[]): Promise<{ out: string; err: string; exitCode: number }> {
    let out = '';
    let err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err += String(chunk);
      return true;
    });
    const program = new Command().exitOverride().configureOutput({ writeErr: (text) => (err += text), writeOut: (text) => (out += text) });
    register(program);
    let exitCode: number;
    try {
      await program.parseAsync(['node', 'pigg', 'preprocess', ...args]);
      exitCode = process.exitCode === undefined ? 0 : Number(process.exitCode);
    } catch (error) {
      exitCode = (error as { exitCode?: number }).exitCode ?? 1;
    }
    return { out, err, exitCode };
  }

  it('writes pixel_values and image_grid_thw (p3 settings)', async () => {
    const file = join(scratch, 'p3.safetensors');
    const { exitCode } = await run([join(DIR, 'synthetic_317x233.png'), '--max-pixels', '32768', '--out', file]);
    expect(exitCode).toBe(0);
    const tensors = readSafetensors(file);
    expect(tensors.get('image_grid_thw')).toMatchObject({ dtype: 'I64', shape: [1, 3] });
    expect(Array.from(tensors.get('image_grid_thw')!.data as BigInt64Array, Number)).toEqual([1, 8, 12]);
    const pixels = tensors.get('pixel_values')!;
    expect(pixels).toMatchObject({ dtype: 'F32', shape: [96, 1536] });
    const want = expected.get('p3_downscale.pixel_values')!.data as Float32Array;
    expect(Buffer.from((pixels.data as Float32Array).buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it('accepts --min-pixels and --resampler sharp', async () => {
    const file = join(scratch, 'p4.safetensors');
    const { exitCode } = await run([join(DIR, 'smooth_150x110.png'), '--min-pixels', '4096', '--resampler', 'sharp', '--out', file]);
    expect(exitCode).toBe(0);
    expect(readSafetensors(file).get('pixel_values')!.shape).toEqual([60, 1536]);
  });

  it('fails with one line naming a missing or undecodable image', async () => {
    const missing = join(scratch, 'nope.png');
    const bad = join(scratch, 'garbage.png');
    writeFileSync(bad, 'garbage');
    for (const [path, message] of [[missing, `pigg: image not found: ${missing}\n`], [bad, `pigg: cannot decode image ${bad}: `]]) {
      const { err, exitCode } = await run([path, '--out', join(scratch, 'x.safetensors')]);
      expect(exitCode).toBe(1);
      expect(err.startsWith(message)).toBe(true);
      expect(err.trimEnd().split('\n')).toHaveLength(1);
    }
  });
});
