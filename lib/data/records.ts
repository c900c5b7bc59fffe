// Scoring as PIGG records it: one record per answer (grid prediction, L2 to the target, hit) and the metrics of a
// list of records. The evaluation runs, the Personalizer's held-out comparison and the report all read these.
import type { Sample } from './types.js';
import { foldMetrics, pointToGrid, scoreGrid, type FoldMetrics } from './metrics.js';

export interface EvalRecord {
  id: string;
  /** Ground truth on the 0-1000 grid. */
  gt: [number, number];
  /** Prediction on the grid; null when the answer could not be parsed. */
  pred: [number, number] | null;
  l2: number | null;
  hit: boolean;
  referring: string | null;
  output: string;
}

export type ResultSummary = FoldMetrics;

/** What scoring needs of an answer (a GroundResult has it): whether it parsed, its grid point, its text. */
export interface ScoredAnswer {
  parsed: boolean;
  grid: { x: number; y: number };
  referring: string | null;
  text: string;
}

/** PIGG's record of one answer: the grid prediction (null when unparsed), its L2 to the target and the hit. */
export function scoreRecord(sample: Sample, result: ScoredAnswer): EvalRecord {
  const gt = pointToGrid(sample.target, sample.width, sample.height);
  const pred: [number, number] | null = result.parsed ? [result.grid.x, result.grid.y] : null;
  const score = scoreGrid(result.parsed ? result.grid : null, gt);
  return { id: sample.id, gt: [gt.x, gt.y], pred, l2: score.l2, hit: score.hit, referring: result.referring, output: result.text };
}

/** Metrics of a list of records, scored as PIGG does (an unparsed answer counts as (0, 0)). */
export function summarize(records: readonly EvalRecord[]): ResultSummary {
  return foldMetrics(records.map((r) => scoreGrid(r.pred && { x: r.pred[0], y: r.pred[1] }, { x: r.gt[0], y: r.gt[1] })));
}
