// ScreenSpot (SeeClick), ScreenSpot-v2 and ScreenSpot-Pro annotations -> canonical samples (datasets.md §4).
// The target is the bbox centre and the bbox is kept, because these benchmarks score a click as a hit when it
// falls inside the box. Benchmarks have no users: `user` holds the platform so per-user breakdowns still work.
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import sharp from 'sharp';
import { isObject, type JsonObject } from '../util/json.js';
import { validateSample } from './manifest.js';
import { fromGrid, pointInBox } from './metrics.js';
import type { Point, Sample } from './types.js';

type Box = [number, number, number, number];

export interface LoadOptions {
  /** Prefix of `sample.image` (relative to the dataset directory the samples will live in); default "images/". */
  imagePrefix?: string;
}

async function readRecords(file: string): Promise<JsonObject[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`);
  }
  if (!Array.isArray(parsed)) throw new Error(`${file}: expected a JSON array of annotations`);
  return parsed.map((record, i) => {
    if (!isObject(record)) throw new Error(`${file}[${i}]: annotation must be a JSON object`);
    return record;
  });
}

function field<T>(record: JsonObject, name: string, where: string, check: (v: unknown) => v is T, expected: string): T {
  const value = record[name];
  if (!check(value)) throw new Error(`${where}: field '${name}' ${value === undefined ? 'is missing' : `must be ${expected}`}`);
  return value;
}

const isString = (v: unknown): v is string => typeof v === 'string' && v !== '';
const isQuad = (v: unknown): v is Box => Array.isArray(v) && v.length === 4 && v.every((n) => typeof n === 'number' && Number.isFinite(n));
const isPair = (v: unknown): v is [number, number] =>
  Array.isArray(v) && v.length === 2 && v.every((n) => Number.isInteger(n) && (n as number) > 0);

const centre = (box: Box): Point => ({ x: (box[0] + box[2]) / 2, y: (box[1] + box[3]) / 2 });

/**
 * Annotated boxes can overhang the screenshot by a few pixels; clip them so the sample stays valid, and keep
 * the original in meta.raw_bbox when that changed it.
 */
function clipped(box: Box, width: number, height: number, meta: JsonObject): Box {
  const clip: Box = [Math.max(0, box[0]), Math.max(0, box[1]), Math.min(width, box[2]), Math.min(height, box[3])];
  if (clip.some((v, i) => v !== box[i])) meta.raw_bbox = [...box];
  return clip;
}

/** "screenspot_mobile_v2.json" -> { split: "mobile", v2: true }. */
function splitName(file: string): { split: string; v2: boolean } {
  const name = basename(file).replace(/\.json$/i, '');
  const v2 = /_v2$/i.test(name);
  return { split: name.replace(/_v2$/i, '').replace(/^screenspot_/i, ''), v2 };
}

/**
 * ScreenSpot v1 / v2: `screenspot_{mobile,desktop,web}[_v2].json`, bbox = [x, y, w, h] in pixels. The files do
 * not give the image size, so it is read from each image header in `imageDir`.
 */
export async function loadScreenSpot(file: string, imageDir: string, options: LoadOptions = {}): Promise<Sample[]> {
  const prefix = options.imagePrefix ?? 'images/';
  const { split, v2 } = splitName(file);
  const source = v2 ? 'screenspot-v2' : 'screenspot';
  const records = await readRecords(file);
  const samples: Sample[] = [];
  for (const [i, record] of records.entries()) {
    const where = `${file}[${i}]`;
    const img = field(record, 'img_filename', where, isString, 'a non-empty string');
    const [x, y, w, h] = field(record, 'bbox', where, isQuad, '[x, y, w, h] of 4 numbers');
    if (w < 0 || h < 0) throw new Error(`${where}: field 'bbox' has a negative width or height`);
    const instruction = field(record, 'instruction', where, isString, 'a non-empty string');
    const srcImage = resolve(imageDir, img);
    const size = await sharp(srcImage)
      .metadata()
      .catch((error: Error) => {
        throw new Error(`${where}: field 'img_filename': cannot read image ${srcImage} (${error.message})`);
      });
    const meta: JsonObject = { src_image: srcImage };
    const bbox = clipped([x, y, x + w, y + h], size.width!, size.height!, meta);
    const platform = typeof record.data_source === 'string' ? record.data_source : 'unknown';
    const uiType = typeof record.data_type === 'string' ? record.data_type : 'unknown';
    const sample: Sample = {
      id: `${source}/${split}/${String(i).padStart(4, '0')}`,
      source,
      user: platform,
      episode: split,
      step: i,
      image: `${prefix}${img}`,
      width: size.width!,
      height: size.height!,
      instruction,
      referring: null,
      action_type: 'click',
      target: centre(bbox),
      bbox,
      bbox_source: source,
      context: { platform, ui_type: uiType, group: split },
      meta,
    };
    samples.push(validateSample(sample, where));
  }
  return samples;
}

export interface ProOptions extends LoadOptions {
  /** Use `instruction_cn` instead of `instruction`. */
  chinese?: boolean;
}

/** ScreenSpot-Pro `annotations/*.json`: bbox = [x1, y1, x2, y2] in pixels, `img_size` = [w, h]. */
export async function loadScreenSpotPro(file: string, imageDir: string, options: ProOptions = {}): Promise<Sample[]> {
  const prefix = options.imagePrefix ?? 'images/';
  const records = await readRecords(file);
  return records.map((record, i) => {
    const where = `${file}[${i}]`;
    const img = field(record, 'img_filename', where, isString, 'a non-empty string');
    const bbox = field(record, 'bbox', where, isQuad, '[x1, y1, x2, y2] of 4 numbers');
    const [width, height] = field(record, 'img_size', where, isPair, '[width, height] of positive integers');
    const instruction = field(record, options.chinese ? 'instruction_cn' : 'instruction', where, isString, 'a non-empty string');
    const id = record.id === undefined ? `${basename(file, '.json')}_${i}` : String(record.id);
    const meta: JsonObject = { src_image: join(resolve(imageDir), img) };
    const box = clipped(bbox, width, height, meta);
    const str = (name: string) => (typeof record[name] === 'string' ? (record[name] as string) : 'unknown');
    const sample: Sample = {
      id: `screenspot-pro/${id}`,
      source: 'screenspot-pro',
      user: str('platform'),
      episode: str('application'),
      step: i,
      image: `${prefix}${img}`,
      width,
      height,
      instruction,
      referring: null,
      action_type: 'click',
      target: centre(box),
      bbox: box,
      bbox_source: 'screenspot-pro',
      context: { platform: str('platform'), application: str('application'), group: str('group'), ui_type: str('ui_type') },
      meta,
    };
    return validateSample(sample, where);
  });
}

export interface BoxAccuracy {
  hits: number;
  n: number;
  accuracy: number | null;
}

export interface BenchmarkAccuracy extends BoxAccuracy {
  /** By "<group>/<ui_type>" (ScreenSpot: mobile/text ...; Pro: CAD/icon ...), as the benchmark tables report. */
  groups: Record<string, BoxAccuracy>;
}

/**
 * Point-in-box accuracy for grid predictions (0-1000; null = parse failure, a miss), mapped back to pixels.
 * `preds[i]` belongs to `samples[i]`.
 */
export function pointInBoxAccuracy(samples: readonly Sample[], preds: ReadonlyArray<Point | null>): BenchmarkAccuracy {
  if (preds.length !== samples.length) throw new Error(`got ${preds.length} predictions for ${samples.length} samples`);
  const total: BoxAccuracy = { hits: 0, n: 0, accuracy: null };
  const groups: Record<string, BoxAccuracy> = {};
  for (const [i, sample] of samples.entries()) {
    if (!sample.bbox) throw new Error(`sample '${sample.id}': field 'bbox' is missing; point-in-box accuracy needs one`);
    const pred = preds[i]!;
    const hit = pred !== null && pointInBox({ x: fromGrid(pred.x, sample.width), y: fromGrid(pred.y, sample.height) }, sample.bbox);
    const ctx = sample.context ?? {};
    const key = `${String(ctx.group ?? sample.episode)}/${String(ctx.ui_type ?? 'unknown')}`;
    const group = (groups[key] ??= { hits: 0, n: 0, accuracy: null });
    for (const acc of [total, group]) {
      acc.n++;
      if (hit) acc.hits++;
      acc.accuracy = acc.hits / acc.n;
    }
  }
  return { ...total, groups };
}
