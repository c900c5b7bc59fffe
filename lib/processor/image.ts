// The Qwen3-VL image processor (spec §6): decode → RGB uint8 → smart_resize → bicubic resize → rescale/normalize →
// two identical temporal frames → flattened patches [t*h*w, 1536] + image_grid_thw.
//
// The default resampler is a port of Pillow's BICUBIC Image.resize (src/libImaging/Resample.c, 8 bits per channel),
// the path of the slow/PIL Qwen2VLImageProcessor and of qwen-vl-utils; it is bit-exact with the fixture's PIL output.
// 'sharp' (libvips Catmull-Rom) is faster on huge inputs but not bit-compatible.
import { roundHalfEven } from '../data/metrics.js';
import { existsSync } from 'node:fs';
import sharp, { type OutputInfo } from 'sharp';

export const PATCH_SIZE = 16;
export const MERGE_SIZE = 2;
export const TEMPORAL_PATCH_SIZE = 2;
/** smart_resize factor = patch_size * merge_size. */
export const RESIZE_FACTOR = PATCH_SIZE * MERGE_SIZE;
/** Values per pixel_values row: 3 channels x 2 frames x 16 x 16. */
export const PATCH_DIM = 3 * TEMPORAL_PATCH_SIZE * PATCH_SIZE * PATCH_SIZE;

export interface PixelLimits {
  minPixels: number;
  maxPixels: number;
}

/** preprocessor_config.json of every Qwen3-VL Instruct size: size = {shortest_edge: 65536, longest_edge: 16777216}. */
export const QWEN3_VL_PIXELS: PixelLimits = { minPixels: 65536, maxPixels: 16777216 };
/** PIGG loads the processor with max_pixels = 1280*28*28 and keeps the default minimum. */
export const PIGG_PIXELS: PixelLimits = { minPixels: 65536, maxPixels: 1280 * 28 * 28 };

export type Resampler = 'pillow' | 'sharp';
/** 'drop': PIL convert("RGB") as transformers does; 'white': composite RGBA over white as qwen-vl-utils does. */
export type AlphaMode = 'drop' | 'white';

export interface ImageProcessorOptions extends Partial<PixelLimits> {
  resampler?: Resampler;
  alpha?: AlphaMode;
}

/** Interleaved RGB, row-major: data[(y * width + x) * 3 + c]. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface ProcessedImage {
  /** Row-major [gridT*gridH*gridW, 1536] in the layout of spec §3.1. */
  pixelValues: Float32Array;
  /** (t, h, w) in 16-pixel patches. */
  gridThw: [number, number, number];
  /** Number of `<|image_pad|>` tokens = t*h*w/4. */
  numImageTokens: number;
  sourceSize: { width: number; height: number };
  resizedSize: { width: number; height: number };
}

/**
 * transformers' smart_resize (4.57.6 / 5.x), returning [height, width]. Keeps its IEEE-double operation order:
 * ceil/floor sit on integer boundaries for common sizes (65x65 → 256 only with this order).
 */
export function smartResize(height: number, width: number, factor = RESIZE_FACTOR, minPixels = QWEN3_VL_PIXELS.minPixels, maxPixels = QWEN3_VL_PIXELS.maxPixels): [number, number] {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`image size must be positive integers, got ${width}x${height}`);
  }
  if (Math.max(height, width) / Math.min(height, width) > 200) {
    throw new Error(`absolute aspect ratio must be smaller than 200, got ${Math.max(height, width) / Math.min(height, width)}`);
  }
  let hBar = roundHalfEven(height / factor) * factor;
  let wBar = roundHalfEven(width / factor) * factor;
  if (hBar * wBar > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    hBar = Math.max(factor, Math.floor(height / beta / factor) * factor);
    wBar = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (hBar * wBar < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    hBar = Math.ceil((height * beta) / factor) * factor;
    wBar = Math.ceil((width * beta) / factor) * factor;
  }
  return [hBar, wBar];
}

/** Decodes PNG/JPEG/WebP/... to RGB uint8, applying the EXIF orientation like HF's load_image. */
export async function decodeImage(source: string | Uint8Array, alpha: AlphaMode = 'drop'): Promise<RgbImage> {
  const name = typeof source === 'string' ? source : 'image buffer';
  if (typeof source === 'string' && !existsSync(source)) throw new Error(`image not found: ${source}`);
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    // ICC profiles are ignored because PIL does not apply them either.
    decoded = await sharp(source, { ignoreIcc: true, failOn: 'error' })
      .autoOrient()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new Error(`cannot decode image ${name}: ${(error as Error).message}`);
  }
  const { width, height, channels } = decoded.info;
  if (channels === 3) return { width, height, data: new Uint8Array(decoded.data.buffer, decoded.data.byteOffset, width * height * 3) };
  if (channels !== 4) throw new Error(`cannot decode image ${name}: ${channels} channels after sRGB conversion`);
  const rgba = decoded.data;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < out.length; i += 3, j += 4) {
    if (alpha === 'drop') {
      out[i] = rgba[j];
      out[i + 1] = rgba[j + 1];
      out[i + 2] = rgba[j + 2];
    } else {
      // PIL Image.paste(rgba, mask=alpha) onto white: DIV255(255*(255-a) + c*a) with PIL's rounding division.
      const a = rgba[j + 3];
      const background = 255 * (255 - a) + 128;
      for (let c = 0; c < 3; c++) {
        const t = background + rgba[j + c] * a;
        out[i + c] = ((t >> 8) + t) >> 8;
      }
    }
  }
  return { width, height, data: out };
}

// ---- Pillow-compatible bicubic resampling (Resample.c, 8bpc path) --------------------------------------------------

const PRECISION_BITS = 32 - 8 - 2;
const BICUBIC_SUPPORT = 2;

function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coefficients {
  ksize: number;
  /** Per output index: first input index and number of taps. */
  start: Int32Array;
  count: Int32Array;
  /** [outSize * ksize] fixed-point weights (22 fractional bits). */
  weights: Int32Array;
}

/** precompute_coeffs + normalize_coeffs_8bpc, with the same double arithmetic and (int) truncations. */
function precomputeCoefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
  const support = BICUBIC_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const taps = new Float64Array(ksize);
  const ss = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubicFilter((x + xmin - center + 0.5) * ss);
      taps[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? taps[x] / ww : taps[x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, weights };
}

/** Fixed-point sum → uint8 as Pillow's clip8 (floor shift, clamp to [0, 255]). */
function clip8(sum: number): number {
  const v = sum >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

const HALF = 1 << (PRECISION_BITS - 1);

function resampleHorizontal(src: RgbImage, outWidth: number): RgbImage {
  const { width, height, data } = src;
  const { ksize, start, count, weights } = precomputeCoefficients(width, outWidth);
  const out = new Uint8Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    const rowIn = y * width * 3;
    let o = y * outWidth * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      const k = xx * ksize;
      const n = count[xx];
      let p = rowIn + start[xx] * 3;
      for (let x = 0; x < n; x++, p += 3) {
        const w = weights[k + x];
        s0 += data[p] * w;
        s1 += data[p + 1] * w;
        s2 += data[p + 2] * w;
      }
      out[o++] = clip8(s0);
      out[o++] = clip8(s1);
      out[o++] = clip8(s2);
    }
  }
  return { width: outWidth, height, data: out };
}

function resampleVertical(src: RgbImage, outHeight: number): RgbImage {
  const { width, height, data } = src;
  const { ksize, start, count, weights } = precomputeCoefficients(height, outHeight);
  const rowLength = width * 3;
  const out = new Uint8Array(outHeight * rowLength);
  for (let yy = 0; yy < outHeight; yy++) {
    const k = yy * ksize;
    const n = count[yy];
    const first = start[yy] * rowLength;
    let o = yy * rowLength;
    for (let i = 0; i < rowLength; i++) {
      let s = HALF;
      for (let y = 0, p = first + i; y < n; y++, p += rowLength) s += data[p] * weights[k + y];
      out[o++] = clip8(s);
    }
  }
  return { width, height: outHeight, data: out };
}

/** Pillow `Image.resize((width, height), BICUBIC)` on an RGB image: horizontal pass, then vertical, uint8 in between. */
export function resizePillowBicubic(image: RgbImage, height: number, width: number): RgbImage {
  let out = image;
  if (width !== image.width) out = resampleHorizontal(out, width);
  if (height !== image.height) out = resampleVertical(out, height);
  return out === image ? { width, height, data: image.data.slice() } : out;
}

/** libvips Catmull-Rom (a = -0.5) resize through sharp; not bit-compatible with Pillow. */
export async function resizeSharp(image: RgbImage, height: number, width: number): Promise<RgbImage> {
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(width, height, { kernel: 'cubic', fit: 'fill' })
    .raw()
    .toBuffer();
  return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, width * height * 3) };
}

// ---- normalisation and patch flattening ---------------------------------------------------------------------------

/**
 * uint8 → normalized fp32, exactly as the slow processor: x = float32(u8 * (1/255)) (double product), then
 * (x - 0.5) / 0.5 in float32 (mean = std = 0.5).
 */
const NORMALIZED = (() => {
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) table[v] = Math.fround(Math.fround(v * (1 / 255)) - 0.5) / 0.5;
  return table;
})();

/**
 * Normalizes an image whose sides are multiples of 32 and flattens it into pixel_values rows: rows ordered
 * (block_row, block_col, in_row, in_col), values ordered (channel, frame, py, px) with the frame duplicated.
 */
export function patchify(image: RgbImage): { pixelValues: Float32Array; gridThw: [number, number, number] } {
  const { width, height, data } = image;
  if (height % RESIZE_FACTOR !== 0 || width % RESIZE_FACTOR !== 0) {
    throw new Error(`image size ${width}x${height} is not a multiple of ${RESIZE_FACTOR}`);
  }
  const gridH = height / PATCH_SIZE;
  const gridW = width / PATCH_SIZE;
  const pixelValues = new Float32Array(gridH * gridW * PATCH_DIM);
  const frame = PATCH_SIZE * PATCH_SIZE;
  let row = 0;
  for (let blockRow = 0; blockRow < gridH / MERGE_SIZE; blockRow++) {
    for (let blockCol = 0; blockCol < gridW / MERGE_SIZE; blockCol++) {
      for (let inRow = 0; inRow < MERGE_SIZE; inRow++) {
        for (let inCol = 0; inCol < MERGE_SIZE; inCol++, row++) {
          const y0 = (blockRow * MERGE_SIZE + inRow) * PATCH_SIZE;
          const x0 = (blockCol * MERGE_SIZE + inCol) * PATCH_SIZE;
          const base = row * PATCH_DIM;
          for (let c = 0; c < 3; c++) {
            const channelBase = base + c * TEMPORAL_PATCH_SIZE * frame;
            for (let py = 0; py < PATCH_SIZE; py++) {
              let p = ((y0 + py) * width + x0) * 3 + c;
              let o = channelBase + py * PATCH_SIZE;
              for (let px = 0; px < PATCH_SIZE; px++, p += 3) pixelValues[o++] = NORMALIZED[data[p]];
            }
            // The single image is repeated to fill the temporal patch of 2 frames.
            pixelValues.copyWithin(channelBase + frame, channelBase, channelBase + frame);
          }
        }
      }
    }
  }
  return { pixelValues, gridThw: [1, gridH, gridW] };
}

/** Resizes a decoded image to its smart_resize size with the chosen resampler (untouched when already that size). */
export async function resizeForModel(image: RgbImage, options: ImageProcessorOptions = {}): Promise<RgbImage> {
  const [height, width] = smartResize(image.height, image.width, RESIZE_FACTOR, options.minPixels ?? QWEN3_VL_PIXELS.minPixels, options.maxPixels ?? QWEN3_VL_PIXELS.maxPixels);
  if (height === image.height && width === image.width) return image;
  return (options.resampler ?? 'pillow') === 'pillow' ? resizePillowBicubic(image, height, width) : resizeSharp(image, height, width);
}

/** The whole per-image pipeline: a file path, an encoded image buffer or an already decoded RGB image. */
export async function processImage(source: string | Uint8Array | RgbImage, options: ImageProcessorOptions = {}): Promise<ProcessedImage> {
  const decoded = typeof source === 'string' || source instanceof Uint8Array ? await decodeImage(source, options.alpha ?? 'drop') : source;
  const resized = await resizeForModel(decoded, options);
  const { pixelValues, gridThw } = patchify(resized);
  return {
    pixelValues,
    gridThw,
    numImageTokens: (gridThw[0] * gridThw[1] * gridThw[2]) / (MERGE_SIZE * MERGE_SIZE),
    sourceSize: { width: decoded.width, height: decoded.height },
    resizedSize: { width: resized.width, height: resized.height },
  };
}
