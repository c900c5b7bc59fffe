// The Qwen3-VL image processor (spec §6): decode → RGB uint8 → smart_resize → bicubic resize → rescale/normalize →
// two identical temporal frames → flattened patches [t*h*w, 1536] + image_grid_thw.
//
// The default resampler is a port of Pillow's BICUBIC Image.resize (src/libImaging/Resample.c, 8 bits per channel),
// the path of the slow/PIL Qwen2VLImageProcessor and of qwen-vl-utils; it is bit-exact with the fixture's PIL output.
// 'torchvision' is the fast Qwen2VLImageProcessorFast's path, the one PIGG ran (transformers 4.57.6 loads the fast
// processor): torch's uint8 antialiased bicubic kernel (int16 weights at a per-axis precision) and the fused
// rescale + normalize (x - 127.5) / 127.5. 'sharp' (libvips Catmull-Rom) is faster on huge inputs but not
// bit-compatible.
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
/** What PIGG asks for: the processor loaded with max_pixels = 1280*28*28 (1,003,520), the default minimum. */
export const PIGG_PIXELS: PixelLimits = { minPixels: 65536, maxPixels: 1280 * 28 * 28 };
/**
 * What PIGG's runs applied: in transformers 4.57.6, Qwen3VLProcessor.from_pretrained(..., max_pixels=...) only sets
 * an attribute, and the (fast) image processor resizes by its size.longest_edge, 16,777,216. A 1080x2400 screenshot
 * became grid [1, 150, 68]: 2550 image tokens instead of the 966 of PIGG_PIXELS.
 */
export const PIGG_EFFECTIVE_PIXELS: PixelLimits = { ...QWEN3_VL_PIXELS };

export type Resampler = 'pillow' | 'torchvision' | 'sharp';
export const RESAMPLERS: readonly Resampler[] = ['pillow', 'torchvision', 'sharp'];
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

// ---- bicubic resampling in fixed point: Pillow's (Resample.c, 8bpc path) and torch's uint8 antialiased kernel ------

const BICUBIC_SUPPORT = 2;

interface Coefficients {
  ksize: number;
  /** Per output index: first input index and number of taps. */
  start: Int32Array;
  count: Int32Array;
  /** [outSize * ksize] fixed-point weights with `precision` fractional bits. */
  weights: Int32Array;
  precision: number;
}

/** Pillow's and torch's tap ranges and normalized double weights (the two differ only in the filter's arithmetic). */
function bicubicTaps(inSize: number, outSize: number, filter: (x: number) => number, clampTaps: boolean) {
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
  const support = BICUBIC_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const taps = new Float64Array(outSize * ksize);
  const ss = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    let xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    if (clampTaps) xmax = Math.min(Math.max(xmax, 0), ksize); // torch clips the rare rounding overflow
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter((x + xmin - center + 0.5) * ss);
      taps[xx * ksize + x] = w;
      ww += w;
    }
    if (ww !== 0) for (let x = 0; x < xmax; x++) taps[xx * ksize + x] /= ww;
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, taps };
}

const PILLOW_PRECISION_BITS = 32 - 8 - 2;

function pillowFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** precompute_coeffs + normalize_coeffs_8bpc, with the same double arithmetic and (int) truncations. */
function pillowCoefficients(inSize: number, outSize: number): Coefficients {
  const { ksize, start, count, taps } = bicubicTaps(inSize, outSize, pillowFilter, false);
  const scaled = 1 << PILLOW_PRECISION_BITS;
  const weights = Int32Array.from(taps, (w) => (w < 0 ? Math.trunc(-0.5 + w * scaled) : Math.trunc(0.5 + w * scaled)));
  return { ksize, start, count, weights, precision: PILLOW_PRECISION_BITS };
}

/** torch's aa_filter for bicubic (cubic_convolution1/2 with A = -0.5, in their operation order). */
function torchFilter(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/**
 * torch's _compute_index_ranges_int16_weights: the largest precision (< 22 bits) at which the axis's largest weight
 * still fits int16, then every weight rounded half away from zero to int16.
 */
function torchCoefficients(inSize: number, outSize: number): Coefficients {
  const { ksize, start, count, taps } = bicubicTaps(inSize, outSize, torchFilter, true);
  const maxWeight = taps.reduce((max, w) => Math.max(max, w), 0);
  let precision = 0;
  for (; precision < 22; precision++) {
    if (Math.trunc(0.5 + maxWeight * 2 ** (precision + 1)) >= 1 << 15) break;
  }
  const weights = Int32Array.from(taps, (w) => {
    const v = w * 2 ** precision;
    return Math.trunc(v < 0 ? v - 0.5 : v + 0.5);
  });
  return { ksize, start, count, weights, precision };
}

/** Fixed-point sum -> uint8: floor shift, clamp to [0, 255] (Pillow's clip8; torch's shift and saturating packs). */
function clip8(sum: number, precision: number): number {
  const v = sum >> precision;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function resampleHorizontal(src: RgbImage, outWidth: number, coefficients: Coefficients): RgbImage {
  const { width, height, data } = src;
  const { ksize, start, count, weights, precision } = coefficients;
  const half = 1 << (precision - 1);
  const out = new Uint8Array(outWidth * height * 3);
  for (let y = 0; y < height; y++) {
    const rowIn = y * width * 3;
    let o = y * outWidth * 3;
    for (let xx = 0; xx < outWidth; xx++) {
      let s0 = half;
      let s1 = half;
      let s2 = half;
      const k = xx * ksize;
      const n = count[xx];
      let p = rowIn + start[xx] * 3;
      for (let x = 0; x < n; x++, p += 3) {
        const w = weights[k + x];
        s0 += data[p] * w;
        s1 += data[p + 1] * w;
        s2 += data[p + 2] * w;
      }
      out[o++] = clip8(s0, precision);
      out[o++] = clip8(s1, precision);
      out[o++] = clip8(s2, precision);
    }
  }
  return { width: outWidth, height, data: out };
}

function resampleVertical(src: RgbImage, outHeight: number, coefficients: Coefficients): RgbImage {
  const { width, data } = src;
  const { ksize, start, count, weights, precision } = coefficients;
  const half = 1 << (precision - 1);
  const rowLength = width * 3;
  const out = new Uint8Array(outHeight * rowLength);
  for (let yy = 0; yy < outHeight; yy++) {
    const k = yy * ksize;
    const n = count[yy];
    const first = start[yy] * rowLength;
    let o = yy * rowLength;
    for (let i = 0; i < rowLength; i++) {
      let s = half;
      for (let y = 0, p = first + i; y < n; y++, p += rowLength) s += data[p] * weights[k + y];
      out[o++] = clip8(s, precision);
    }
  }
  return { width, height: outHeight, data: out };
}

/** Horizontal pass, then vertical, uint8 in between (Pillow and torch alike). */
function resizeSeparable(image: RgbImage, height: number, width: number, coefficients: (inSize: number, outSize: number) => Coefficients): RgbImage {
  let out = image;
  if (width !== image.width) out = resampleHorizontal(out, width, coefficients(image.width, width));
  if (height !== image.height) out = resampleVertical(out, height, coefficients(image.height, height));
  return out === image ? { width, height, data: image.data.slice() } : out;
}

/** Pillow `Image.resize((width, height), BICUBIC)` on an RGB image. */
export function resizePillowBicubic(image: RgbImage, height: number, width: number): RgbImage {
  return resizeSeparable(image, height, width, pillowCoefficients);
}

/** torchvision `F.resize(uint8 CHW tensor, [height, width], BICUBIC, antialias=True)` on the CPU. */
export function resizeTorchvisionBicubic(image: RgbImage, height: number, width: number): RgbImage {
  return resizeSeparable(image, height, width, torchCoefficients);
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
const NORMALIZED = Float32Array.from({ length: 256 }, (_, v) => Math.fround(Math.fround(v * (1 / 255)) - 0.5) / 0.5);
/** The fast processor fuses rescale and normalize: (float32(u8) - 127.5) / 127.5 in float32 (mean and std times 255). */
const NORMALIZED_FUSED = Float32Array.from({ length: 256 }, (_, v) => (v - 127.5) / 127.5);

/**
 * Normalizes an image whose sides are multiples of 32 and flattens it into pixel_values rows: rows ordered
 * (block_row, block_col, in_row, in_col), values ordered (channel, frame, py, px) with the frame duplicated.
 */
export function patchify(image: RgbImage, normalized: Float32Array = NORMALIZED): { pixelValues: Float32Array; gridThw: [number, number, number] } {
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
              for (let px = 0; px < PATCH_SIZE; px++, p += 3) pixelValues[o++] = normalized[data[p]];
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
  const resampler = options.resampler ?? 'pillow';
  if (resampler === 'sharp') return resizeSharp(image, height, width);
  return resampler === 'torchvision' ? resizeTorchvisionBicubic(image, height, width) : resizePillowBicubic(image, height, width);
}

/** The whole per-image pipeline: a file path, an encoded image buffer or an already decoded RGB image. */
export async function processImage(source: string | Uint8Array | RgbImage, options: ImageProcessorOptions = {}): Promise<ProcessedImage> {
  const decoded = typeof source === 'string' || source instanceof Uint8Array ? await decodeImage(source, options.alpha ?? 'drop') : source;
  const resized = await resizeForModel(decoded, options);
  const { pixelValues, gridThw } = patchify(resized, options.resampler === 'torchvision' ? NORMALIZED_FUSED : NORMALIZED);
  return {
    pixelValues,
    gridThw,
    numImageTokens: (gridThw[0] * gridThw[1] * gridThw[2]) / (MERGE_SIZE * MERGE_SIZE),
    sourceSize: { width: decoded.width, height: decoded.height },
    resizedSize: { width: resized.width, height: resized.height },
  };
}
