// The canonical dataset on disk ("gg-sample/1", datasets.md §5): <dir>/dataset.json, <dir>/manifest.jsonl (one
// Sample per line, keys in a fixed order) and <dir>/images/. Reading validates every record and names the file,
// line and field of the first bad one; writing is atomic (temp file + rename) so a crash never leaves half a file.
import { createReadStream } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import { writeFileAtomic } from '../atomic.js';
import { isObject, type JsonObject } from '../util/json.js';
import type { DatasetInfo, Point, Sample } from './types.js';

export const SCHEMA = 'gg-sample/1';
export const MANIFEST_FILE = 'manifest.jsonl';
export const INFO_FILE = 'dataset.json';

export interface Dataset {
  dir: string;
  info: DatasetInfo;
  samples: Sample[];
}

const isFiniteNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

/** Checks one parsed record against the Sample schema; `where` prefixes the error (e.g. "manifest.jsonl:12"). */
export function validateSample(value: unknown, where: string): Sample {
  const fail = (field: string, problem: string): never => {
    throw new Error(`${where}: field '${field}' ${problem}`);
  };
  if (!isObject(value)) throw new Error(`${where}: record must be a JSON object`);
  const str = (field: string, nonEmpty = true) => {
    const v = value[field];
    if (typeof v !== 'string') fail(field, v === undefined ? 'is missing' : 'must be a string');
    if (nonEmpty && v === '') fail(field, 'must not be empty');
  };
  const optional = (field: string, check: (v: unknown) => boolean, expected: string) => {
    const v = value[field];
    if (v !== undefined && !check(v)) fail(field, `must be ${expected}`);
  };
  str('id');
  str('source');
  str('user');
  str('episode', false);
  if (!Number.isInteger(value.step) || (value.step as number) < 0) {
    fail('step', value.step === undefined ? 'is missing' : 'must be an integer >= 0');
  }
  str('image');
  if (isAbsolute(value.image as string) || (value.image as string).split(/[\\/]/).includes('..')) {
    fail('image', 'must be a path inside the dataset directory');
  }
  for (const field of ['width', 'height']) {
    const v = value[field];
    if (!Number.isInteger(v) || (v as number) <= 0) fail(field, v === undefined ? 'is missing' : 'must be an integer > 0');
  }
  const width = value.width as number;
  const height = value.height as number;
  str('instruction', false);
  if (value.referring !== null && typeof value.referring !== 'string') {
    fail('referring', value.referring === undefined ? 'is missing' : 'must be a string or null');
  }
  optional('action_type', (v) => typeof v === 'string', 'a string');

  const target = value.target;
  if (!isObject(target)) fail('target', target === undefined ? 'is missing' : 'must be an object {x, y}');
  const { x, y } = target as JsonObject;
  if (!isFiniteNumber(x)) fail('target.x', 'must be a finite number');
  if (!isFiniteNumber(y)) fail('target.y', 'must be a finite number');
  if ((x as number) < 0 || (x as number) >= width) fail('target.x', `${x as number} is outside [0, ${width})`);
  if ((y as number) < 0 || (y as number) >= height) fail('target.y', `${y as number} is outside [0, ${height})`);

  const bbox = value.bbox;
  if (bbox !== undefined && bbox !== null) {
    if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every(isFiniteNumber)) {
      fail('bbox', 'must be null or [x1, y1, x2, y2] of 4 finite numbers');
    }
    const [x1, y1, x2, y2] = bbox as number[];
    if (x1! > x2! || y1! > y2!) fail('bbox', `[${(bbox as number[]).join(', ')}] has x1 > x2 or y1 > y2`);
    if (x1! < 0 || y1! < 0 || x2! > width || y2! > height) {
      fail('bbox', `[${(bbox as number[]).join(', ')}] is outside the ${width}x${height} image`);
    }
  }
  optional('bbox_source', (v) => v === null || typeof v === 'string', 'a string or null');
  optional('history', (v) => Array.isArray(v) && v.every((h) => typeof h === 'string'), 'an array of strings');
  optional('context', isObject, 'an object');
  optional('meta', isObject, 'an object');
  return value as unknown as Sample;
}

/** Checks dataset.json; `file` names it in errors. */
export function validateInfo(value: unknown, file: string): DatasetInfo {
  if (!isObject(value)) throw new Error(`${file}: must be a JSON object`);
  if (value.schema !== SCHEMA) throw new Error(`${file}: field 'schema' must be '${SCHEMA}', got ${JSON.stringify(value.schema)}`);
  for (const field of ['name', 'source', 'created_by']) {
    if (typeof value[field] !== 'string') throw new Error(`${file}: field '${field}' must be a string`);
  }
  if (value.coord_space !== 'pixel') throw new Error(`${file}: field 'coord_space' must be 'pixel'`);
  if (!Array.isArray(value.users) || !value.users.every((u) => typeof u === 'string')) {
    throw new Error(`${file}: field 'users' must be an array of strings`);
  }
  if (!isObject(value.counts) || !Object.values(value.counts).every((c) => Number.isInteger(c))) {
    throw new Error(`${file}: field 'counts' must be an object of integers`);
  }
  if (value.notes !== undefined && typeof value.notes !== 'string') throw new Error(`${file}: field 'notes' must be a string`);
  return value as unknown as DatasetInfo;
}

/** Reads and validates a manifest.jsonl; blank lines are skipped, ids must be unique. */
export async function readManifest(file: string): Promise<Sample[]> {
  const samples: Sample[] = [];
  const seen = new Map<string, number>();
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === '') continue;
    const where = `${file}:${lineNo}`;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new Error(`${where}: invalid JSON (${(error as Error).message})`);
    }
    const sample = validateSample(parsed, where);
    const first = seen.get(sample.id);
    if (first !== undefined) throw new Error(`${where}: field 'id' duplicates '${sample.id}' from line ${first}`);
    seen.set(sample.id, lineNo);
    samples.push(sample);
  }
  return samples;
}

export interface ReadOptions {
  /** Also check that every sample's image file exists. */
  checkImages?: boolean;
}

export async function readDataset(dir: string, options: ReadOptions = {}): Promise<Dataset> {
  const infoFile = join(dir, INFO_FILE);
  let infoJson: unknown;
  try {
    infoJson = JSON.parse(await readFile(infoFile, 'utf8'));
  } catch (error) {
    throw new Error(`${infoFile}: ${(error as Error).message}`);
  }
  const info = validateInfo(infoJson, infoFile);
  const manifest = join(dir, MANIFEST_FILE);
  const samples = await readManifest(manifest);
  if (options.checkImages) {
    for (const [i, sample] of samples.entries()) {
      await access(join(dir, sample.image)).catch(() => {
        throw new Error(`${manifest}: sample ${i + 1} (id '${sample.id}'): field 'image' names a missing file ${sample.image}`);
      });
    }
  }
  return { dir, info, samples };
}

/** One manifest line with the keys in the fixed order of datasets.md §5 (absent optional fields left out). */
export function sampleToJsonLine(sample: Sample): string {
  const ordered: Record<string, unknown> = {
    id: sample.id,
    source: sample.source,
    user: sample.user,
    episode: sample.episode,
    step: sample.step,
    image: sample.image,
    width: sample.width,
    height: sample.height,
    instruction: sample.instruction,
    referring: sample.referring,
    action_type: sample.action_type,
    target: { x: sample.target.x, y: sample.target.y } satisfies Point,
    bbox: sample.bbox,
    bbox_source: sample.bbox_source,
    history: sample.history,
    context: sample.context,
    meta: sample.meta,
  };
  return JSON.stringify(ordered);
}

/** Validates, then writes manifest.jsonl and dataset.json atomically (manifest first, so dataset.json marks completion). */
export async function writeDataset(dir: string, info: DatasetInfo, samples: readonly Sample[]): Promise<void> {
  validateInfo(info, join(dir, INFO_FILE));
  const seen = new Set<string>();
  const lines = samples.map((sample, i) => {
    const where = `sample ${i + 1} (to ${join(dir, MANIFEST_FILE)}:${i + 1})`;
    validateSample(sample, where);
    if (seen.has(sample.id)) throw new Error(`${where}: field 'id' duplicates '${sample.id}'`);
    seen.add(sample.id);
    return sampleToJsonLine(sample);
  });
  await writeFileAtomic(join(dir, MANIFEST_FILE), lines.length > 0 ? `${lines.join('\n')}\n` : '');
  await writeFileAtomic(join(dir, INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
}

/** Orders user ids numerically when both are integers, else as strings (so "2" < "10"). */
export function compareUsers(a: string, b: string): number {
  const na = /^\d+$/.test(a) ? Number(a) : Number.NaN;
  const nb = /^\d+$/.test(b) ? Number(b) : Number.NaN;
  if (!Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
  if (!Number.isNaN(na)) return -1;
  if (!Number.isNaN(nb)) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function listUsers(samples: readonly Pick<Sample, 'user'>[]): string[] {
  return [...new Set(samples.map((s) => s.user))].sort(compareUsers);
}

export interface UserSpec {
  spec: string;
  includes(user: string): boolean;
}

/**
 * Parses a user selection like "1-10", "11-83", "1,3,7" or "1-5 alice": integer ranges (inclusive) and literal
 * ids, separated by commas or spaces.
 */
export function parseUserSpec(spec: string): UserSpec {
  const parts = spec.split(/[\s,]+/).filter((p) => p !== '');
  if (parts.length === 0) throw new Error(`user spec '${spec}' selects no users`);
  const ranges: Array<[number, number]> = [];
  const names = new Set<string>();
  for (const part of parts) {
    const range = /^(\d+)-(\d+)$/.exec(part);
    if (range) {
      const lo = Number(range[1]);
      const hi = Number(range[2]);
      if (lo > hi) throw new Error(`user spec '${spec}': range '${part}' is empty (start > end)`);
      ranges.push([lo, hi]);
    } else if (/^[\w.]+(?:-[\w.]+)*$/.test(part)) {
      names.add(/^\d+$/.test(part) ? String(Number(part)) : part);
    } else {
      throw new Error(`user spec '${spec}': cannot read '${part}' (expected an id or a range like 1-10)`);
    }
  }
  return {
    spec,
    includes(user: string): boolean {
      if (/^\d+$/.test(user)) {
        const n = Number(user);
        if (names.has(String(n)) || ranges.some(([lo, hi]) => n >= lo && n <= hi)) return true;
      }
      return names.has(user);
    },
  };
}

/** The samples whose user the spec selects, in their original order. */
export function selectSamples<T extends Pick<Sample, 'user'>>(samples: readonly T[], users: string | UserSpec): T[] {
  const spec = typeof users === 'string' ? parseUserSpec(users) : users;
  return samples.filter((s) => spec.includes(s.user));
}
