// Reading evaluation results as PIGG lays them out: <results>/<experiment>/user_<id>/out.json for one-shot runs
// (vanilla, global, any checkpoint) and <results>/<experiment>/user_<id>/fold_<k>/out.json for k-fold runs
// (personalized). Each out.json is a JSON array of per-sample records on the 0-1000 grid.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { EvalRecord } from '../data/records.js';
import { compareUsers } from '../data/manifest.js';
import { foldMetrics, type FoldMetrics, type SampleScore } from '../data/metrics.js';
import { isObject } from '../util/json.js';

export const OUT_FILE = 'out.json';

/** One out.json record, as the experiment runners write it (referring/output may be absent in other tools' files). */
export type ResultRecord = Omit<EvalRecord, 'referring' | 'output'> & Partial<Pick<EvalRecord, 'referring' | 'output'>>;

export interface Run {
  user: string;
  /** The held-out fold for k-fold experiments, null for one-shot runs. */
  fold: number | null;
  /** The folder holding out.json (and the run's summary.json, when written). */
  dir: string;
  file: string;
}

export interface Experiment {
  name: string;
  dir: string;
  kind: 'flat' | 'folds';
  /** Users in numeric order; each with one run ('flat') or its folds in order ('folds'). */
  users: Array<{ user: string; runs: Run[] }>;
}

const isPair = (v: unknown): v is [number, number] =>
  Array.isArray(v) && v.length === 2 && v.every((n) => typeof n === 'number' && Number.isFinite(n));

/** Checks one out.json record; `where` prefixes errors (e.g. "…/out.json: record 3"). */
export function validateRecord(value: unknown, where: string): ResultRecord {
  if (!isObject(value)) throw new Error(`${where}: must be a JSON object`);
  if (typeof value.id !== 'string' || value.id === '') throw new Error(`${where}: field 'id' must be a non-empty string`);
  if (!isPair(value.gt)) throw new Error(`${where}: field 'gt' must be [x, y] of finite numbers`);
  if (value.pred !== null && !isPair(value.pred)) throw new Error(`${where}: field 'pred' must be [x, y] or null`);
  if (value.l2 !== null && !(typeof value.l2 === 'number' && Number.isFinite(value.l2) && value.l2 >= 0)) {
    throw new Error(`${where}: field 'l2' must be a number >= 0 or null`);
  }
  if (typeof value.hit !== 'boolean') throw new Error(`${where}: field 'hit' must be a boolean`);
  if (value.referring !== undefined && value.referring !== null && typeof value.referring !== 'string') {
    throw new Error(`${where}: field 'referring' must be a string or null`);
  }
  if (value.output !== undefined && typeof value.output !== 'string') throw new Error(`${where}: field 'output' must be a string`);
  return value as unknown as ResultRecord;
}

export async function readResultRecords(file: string): Promise<ResultRecord[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: no such file` : `${file}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: invalid JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(parsed)) throw new Error(`${file}: must be a JSON array of records`);
  return parsed.map((record, i) => validateRecord(record, `${file}: record ${i}`));
}

/** Per-run metrics from the records as stored (hit and l2 taken as written, parse failure = pred null). */
export function recordMetrics(records: readonly ResultRecord[]): FoldMetrics {
  const scores = records.map(
    (r): SampleScore => ({
      parsed: r.pred !== null,
      pred: r.pred === null ? null : { x: r.pred[0], y: r.pred[1] },
      gt: { x: r.gt[0], y: r.gt[1] },
      l2: r.l2,
      hit: r.hit,
      pixel_l2: null,
      in_bbox: null,
    }),
  );
  return foldMetrics(scores);
}

async function subdirs(dir: string, pattern: RegExp): Promise<Array<{ name: string; match: RegExpExecArray }>> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.flatMap((e) => {
    const match = e.isDirectory() ? pattern.exec(e.name) : null;
    return match ? [{ name: e.name, match }] : [];
  });
}

const isFile = (file: string) => stat(file).then((s) => s.isFile(), () => false);

/** The runs of one experiment folder, or null when it holds no out.json in either layout. */
export async function readExperiment(dir: string, name: string): Promise<Experiment | null> {
  const flat: Experiment['users'] = [];
  const folds: Experiment['users'] = [];
  for (const { name: userDir, match } of await subdirs(dir, /^user_(.+)$/)) {
    const user = match[1]!;
    const base = join(dir, userDir);
    if (await isFile(join(base, OUT_FILE))) flat.push({ user, runs: [{ user, fold: null, dir: base, file: join(base, OUT_FILE) }] });
    const runs: Run[] = [];
    for (const { name: foldDir, match: f } of await subdirs(base, /^fold_(\d+)$/)) {
      const file = join(base, foldDir, OUT_FILE);
      if (await isFile(file)) runs.push({ user, fold: Number(f[1]), dir: join(base, foldDir), file });
    }
    if (runs.length > 0) folds.push({ user, runs: runs.sort((a, b) => a.fold! - b.fold!) });
  }
  if (flat.length > 0 && folds.length > 0) {
    throw new Error(`${dir}: mixes user_<id>/out.json and user_<id>/fold_<k>/out.json; keep one layout per experiment`);
  }
  const users = (flat.length > 0 ? flat : folds).sort((a, b) => compareUsers(a.user, b.user));
  if (users.length === 0) return null;
  return { name, dir, kind: flat.length > 0 ? 'flat' : 'folds', users };
}

/** Vanilla first, then global, then other one-shot runs, then k-fold runs; ties by name. */
function experimentRank(e: Experiment): number {
  if (e.kind === 'folds') return 3;
  if (/vanilla/i.test(e.name)) return 0;
  if (/global/i.test(e.name)) return 1;
  return 2;
}

/** Every experiment under a results folder (any subfolder in either layout). */
export async function discoverExperiments(resultsDir: string): Promise<Experiment[]> {
  const info = await stat(resultsDir).catch(() => null);
  if (!info?.isDirectory()) throw new Error(`${resultsDir}: no such results directory`);
  const found: Experiment[] = [];
  for (const { name } of await subdirs(resultsDir, /^(?!\.)/)) {
    const experiment = await readExperiment(join(resultsDir, name), name);
    if (experiment) found.push(experiment);
  }
  if (found.length === 0) {
    throw new Error(
      `${resultsDir}: no results found (expected <experiment>/user_<id>/${OUT_FILE} or <experiment>/user_<id>/fold_<k>/${OUT_FILE})`,
    );
  }
  return found.sort((a, b) => experimentRank(a) - experimentRank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
