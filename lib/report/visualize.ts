// Prediction pictures, like PIGG's visualize_prediction.py: one PNG per evaluated sample at the screenshot's own
// size, with the ground truth, the prediction and the hit region drawn on it (see draw.ts).
// visualizeRecords takes records directly so a caller that has just run inference can draw without files;
// visualizeRun reads them from a results tree.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readDataset } from '../data/manifest.js';
import type { Sample } from '../data/types.js';
import { drawPrediction } from './draw.js';
import { OUT_FILE, readExperiment, discoverExperiments, readResultRecords, type Experiment, type ResultRecord } from './results.js';

/** A file-name-safe form of a sample id ("fingertip20k/1/2025…/0003" -> "fingertip20k_1_2025…_0003"). */
export function sanitizeId(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+|_+$/g, '');
  return (safe === '' ? 'sample' : safe).slice(0, 120);
}

export interface VisualizeOptions {
  /** Record indices to draw (default: all). */
  indices?: readonly number[];
  /** Names where the records came from (e.g. an out.json path) in error messages. */
  source?: string;
  /** Hit threshold on the grid, for the drawn region. */
  delta?: number;
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

function caption(index: number, record: ResultRecord, sample: Sample): string[] {
  const head = [`#${index}  ${record.id}  (user ${sample.user})`, sample.instruction];
  const gt = `GT (${fmt(record.gt[0])}, ${fmt(record.gt[1])})`;
  const verdict = record.hit ? 'HIT' : 'MISS';
  if (record.pred === null) {
    const scored = record.l2 === null ? '' : ` · scored as (0, 0): L2 ${record.l2.toFixed(1)}`;
    return [...head, 'NO PREDICTION: the output could not be parsed', `${gt}${scored} · ${verdict}`];
  }
  const l2 = record.l2 === null ? 'L2 n/a' : `L2 ${record.l2.toFixed(1)}`;
  return [...head, `${gt} · pred (${fmt(record.pred[0])}, ${fmt(record.pred[1])}) · ${l2} · ${verdict}`];
}

/**
 * Draws records[i] for each selected index onto its sample's image (matched by id, the image path relative to
 * datasetDir) and writes <outDir>/user_<user>/<i>_<sanitized id>.png. Everything is checked before anything is
 * written. Returns the written files in index order.
 */
export async function visualizeRecords(
  records: readonly ResultRecord[],
  samplesById: ReadonlyMap<string, Sample>,
  datasetDir: string,
  outDir: string,
  options: VisualizeOptions = {},
): Promise<string[]> {
  const from = options.source ?? 'records';
  const indices = options.indices ?? records.map((_, i) => i);
  const jobs: Array<{ index: number; record: ResultRecord; sample: Sample; image: string }> = [];
  for (const index of indices) {
    const record = records[index];
    if (!Number.isInteger(index) || record === undefined) {
      const range = records.length === 0 ? 'it has no records' : `it has ${records.length} records, 0-${records.length - 1}`;
      throw new Error(`${from}: sample index ${index} is out of range (${range})`);
    }
    const sample = samplesById.get(record.id);
    if (!sample) throw new Error(`${join(datasetDir, 'manifest.jsonl')}: no sample with id '${record.id}' (record ${index} of ${from})`);
    const image = join(datasetDir, sample.image);
    if (!(await stat(image).then((s) => s.isFile(), () => false))) {
      throw new Error(`${image}: image file is missing (sample '${sample.id}')`);
    }
    jobs.push({ index, record, sample, image });
  }
  const written: string[] = [];
  for (const { index, record, sample, image } of jobs) {
    const file = join(outDir, `user_${sample.user}`, `${index}_${sanitizeId(record.id)}.png`);
    const overlay = {
      gt: { x: record.gt[0], y: record.gt[1] },
      pred: record.pred === null ? null : { x: record.pred[0], y: record.pred[1] },
      hit: record.hit,
      caption: caption(index, record, sample),
      delta: options.delta,
    };
    await drawPrediction(image, overlay, file);
    written.push(file);
  }
  return written;
}

export interface VisualizeRunOptions {
  results: string;
  data: string;
  user: string;
  /** Experiment folder under results; may be left out when results holds only one. */
  experiment?: string;
  /** Held-out fold, required for k-fold experiments. */
  fold?: number;
  /** Record indices; left out = all. */
  samples?: readonly number[];
  /** Default: <results>/visualizations/<experiment>[/fold_<k>]. */
  out?: string;
}

async function pickExperiment(results: string, name: string | undefined): Promise<Experiment> {
  if (name !== undefined) {
    const dir = join(results, name);
    const experiment = await readExperiment(dir, name);
    if (!experiment) throw new Error(`${dir}: no results (expected user_<id>/${OUT_FILE} or user_<id>/fold_<k>/${OUT_FILE})`);
    return experiment;
  }
  const all = await discoverExperiments(results);
  if (all.length > 1) throw new Error(`${results} holds several experiments (${all.map((e) => e.name).join(', ')}); pick one with --experiment`);
  return all[0]!;
}

/** Reads one run's out.json and the dataset, then draws the selected records; returns the written files. */
export async function visualizeRun(options: VisualizeRunOptions): Promise<string[]> {
  const experiment = await pickExperiment(options.results, options.experiment);
  const entry = experiment.users.find((u) => u.user === options.user);
  const userDir = join(experiment.dir, `user_${options.user}`);
  if (!entry) {
    const exists = await stat(userDir).then((s) => s.isDirectory(), () => false);
    if (exists && experiment.kind === 'flat') throw new Error(`${join(userDir, OUT_FILE)}: no such file`);
    if (exists) throw new Error(`${userDir}: no fold_<k>/${OUT_FILE} found`);
    throw new Error(`${experiment.dir}: no results for user ${options.user} (users: ${experiment.users.map((u) => u.user).join(', ')})`);
  }
  let run = entry.runs[0]!;
  if (experiment.kind === 'folds') {
    const folds = entry.runs.map((r) => r.fold).join(', ');
    if (options.fold === undefined) throw new Error(`${experiment.dir} holds k-fold results; pick one with --fold (user ${options.user} has folds ${folds})`);
    const found = entry.runs.find((r) => r.fold === options.fold);
    if (!found) throw new Error(`${join(userDir, `fold_${options.fold}`, OUT_FILE)}: no such file (user ${options.user} has folds ${folds})`);
    run = found;
  } else if (options.fold !== undefined) {
    throw new Error(`--fold applies only to k-fold results; ${join(userDir, OUT_FILE)} is a single run`);
  }
  const records = await readResultRecords(run.file);
  const dataset = await readDataset(options.data);
  const samplesById = new Map(dataset.samples.map((s) => [s.id, s]));
  const out = options.out ?? join(options.results, 'visualizations', experiment.name, run.fold === null ? '' : `fold_${run.fold}`);
  return visualizeRecords(records, samplesById, options.data, out, { source: run.file, indices: options.samples });
}
