// Grounding metrics as PIGG computes them (src/utils/eval.py evaluate_coordinates): L2 on the relative
// 0-1000 grid, hit = L2 <= 140, mean and numpy-style median L2; per user the mean and population std over
// the k folds; overall = mean over users. Pixel-space L2 and point-in-bbox accuracy are extras.
//
// Parse failures, two modes:
//  - 'pigg':   the prediction becomes (0, 0) and is scored like any other point (what PIGG's parser does;
//              it inflates L2, so use it only to compare with PIGG's numbers).
//  - 'strict': the sample is a miss (counted in the accuracy denominator) and has no L2 (l2 = null),
//              so it is left out of the L2 statistics.
import type { Point, Sample } from './types.js';

export const GRID = 1000;
export const PIGG_DELTA = 140;

export type FailureMode = 'pigg' | 'strict';

/** Python's round(): half to even, so ties land where PIGG's Python preprocessing would put them. */
export function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function clampGrid(value: number): number {
  return Math.min(GRID, Math.max(0, value));
}

/** Pixel -> grid: round(px / size * 1000) clamped to [0, 1000] (datasets.md §3; PIGG's GT example fits). */
export function toGrid(px: number, size: number): number {
  if (!(size > 0)) throw new Error(`image size must be positive, got ${size}`);
  return clampGrid(roundHalfEven((px / size) * GRID));
}

/** Grid -> pixel: v / 1000 * size, unrounded. */
export function fromGrid(value: number, size: number): number {
  if (!(size > 0)) throw new Error(`image size must be positive, got ${size}`);
  return (value / GRID) * size;
}

export function pointToGrid(point: Point, width: number, height: number): Point {
  return { x: toGrid(point.x, width), y: toGrid(point.y, height) };
}

export function pointFromGrid(point: Point, width: number, height: number): Point {
  return { x: fromGrid(point.x, width), y: fromGrid(point.y, height) };
}

/** Euclidean distance as numpy's norm computes it: sqrt(dx*dx + dy*dy) (not Math.hypot, which rounds differently). */
export function l2(a: Point, b: Point): number {
  const dx = a.x - b.x;
  const dy = a.y - b.y;
  return Math.sqrt(dx * dx + dy * dy);
}

/** Inclusive point-in-box test (ScreenSpot counts a point on the edge as a hit). */
export function pointInBox(point: Point, bbox: readonly [number, number, number, number]): boolean {
  const [x1, y1, x2, y2] = bbox;
  return point.x >= x1 && point.x <= x2 && point.y >= y1 && point.y <= y2;
}

/** numpy's pairwise summation for float64 (blocks of 8 accumulators up to 128 items), bit-exact with np.sum. */
export function npSum(values: readonly number[]): number {
  const pairwise = (start: number, n: number): number => {
    if (n < 8) {
      let sum = -0;
      for (let i = 0; i < n; i++) sum += values[start + i]!;
      return sum;
    }
    if (n <= 128) {
      const r = values.slice(start, start + 8);
      let i = 8;
      for (; i < n - (n % 8); i += 8) {
        for (let j = 0; j < 8; j++) r[j]! += values[start + i + j]!;
      }
      let sum = r[0]! + r[1]! + (r[2]! + r[3]!) + (r[4]! + r[5]! + (r[6]! + r[7]!));
      for (; i < n; i++) sum += values[start + i]!;
      return sum;
    }
    let half = Math.floor(n / 2);
    half -= half % 8;
    return pairwise(start, half) + pairwise(start + half, n - half);
  };
  return pairwise(0, values.length);
}

/** np.mean; null for an empty list (numpy would give nan). */
export function npMean(values: readonly number[]): number | null {
  return values.length === 0 ? null : npSum(values) / values.length;
}

/** np.median: the middle value, or the mean of the two middle values for an even count. */
export function npMedian(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** np.std with ddof=0 (population std). */
export function npStd(values: readonly number[]): number | null {
  const mean = npMean(values);
  if (mean === null) return null;
  const squares = values.map((v) => (v - mean) * (v - mean));
  return Math.sqrt(npSum(squares) / values.length);
}

export interface SampleScore {
  /** False when the model output could not be parsed. */
  parsed: boolean;
  /** The point that was scored, on the grid: the prediction, (0, 0) for a failure in 'pigg' mode, null in 'strict'. */
  pred: Point | null;
  /** The ground truth on the grid. */
  gt: Point;
  /** L2 on the 0-1000 grid; null for a failure in 'strict' mode. */
  l2: number | null;
  hit: boolean;
  /** L2 in source pixels, when the image size is known; null for a failure in 'strict' mode. */
  pixel_l2: number | null;
  /** Whether the scored point falls in the source bbox; null when the sample has no bbox. */
  in_bbox: boolean | null;
}

export interface ScoreOptions {
  mode?: FailureMode;
  delta?: number;
}

/** Scores one prediction given on the grid (null = parse failure) against a grid ground truth. */
export function scoreGrid(pred: Point | null, gt: Point, options: ScoreOptions = {}): SampleScore {
  const { mode = 'pigg', delta = PIGG_DELTA } = options;
  const scored = pred ?? (mode === 'pigg' ? { x: 0, y: 0 } : null);
  const dist = scored === null ? null : l2(scored, gt);
  return {
    parsed: pred !== null,
    pred: scored,
    gt,
    l2: dist,
    hit: dist !== null && dist <= delta,
    pixel_l2: null,
    in_bbox: null,
  };
}

/**
 * Scores a grid prediction against a canonical sample: the ground truth is the sample's pixel target mapped
 * to the grid with toGrid (integers, as PIGG's stored answers are); pixel L2 and bbox use the prediction mapped
 * back with fromGrid.
 */
export function scoreSample(
  sample: Pick<Sample, 'width' | 'height' | 'target' | 'bbox'>,
  pred: Point | null,
  options: ScoreOptions = {},
): SampleScore {
  const score = scoreGrid(pred, pointToGrid(sample.target, sample.width, sample.height), options);
  const predPx = score.pred === null ? null : pointFromGrid(score.pred, sample.width, sample.height);
  score.pixel_l2 = predPx === null ? null : l2(predPx, sample.target);
  if (sample.bbox) score.in_bbox = predPx !== null && pointInBox(predPx, sample.bbox);
  return score;
}

export interface FoldMetrics {
  /** Share of hits over all n samples (failures count as misses in 'strict' mode). */
  accuracy: number | null;
  mean_l2: number | null;
  median_l2: number | null;
  n: number;
  parse_failures: number;
  pixel_mean_l2: number | null;
  pixel_median_l2: number | null;
  /** Point-in-bbox accuracy over the samples that have a bbox (bbox_n of them). */
  bbox_accuracy: number | null;
  bbox_n: number;
}

export function foldMetrics(scores: readonly SampleScore[]): FoldMetrics {
  const dists = scores.flatMap((s) => (s.l2 === null ? [] : [s.l2]));
  const pixel = scores.flatMap((s) => (s.pixel_l2 === null ? [] : [s.pixel_l2]));
  const boxed = scores.filter((s) => s.in_bbox !== null);
  return {
    accuracy: npMean(scores.map((s) => (s.hit ? 1 : 0))),
    mean_l2: npMean(dists),
    median_l2: npMedian(dists),
    n: scores.length,
    parse_failures: scores.filter((s) => !s.parsed).length,
    pixel_mean_l2: npMean(pixel),
    pixel_median_l2: npMedian(pixel),
    bbox_accuracy: npMean(boxed.map((s) => (s.in_bbox ? 1 : 0))),
    bbox_n: boxed.length,
  };
}

export interface UserSummary {
  user_id: string;
  n_folds: number;
  avg_accuracy: number | null;
  std_accuracy: number | null;
  avg_mean_l2: number | null;
  std_mean_l2: number | null;
  avg_median_l2: number | null;
  std_median_l2: number | null;
}

const present = (values: ReadonlyArray<number | null>): number[] => values.filter((v): v is number => v !== null);

/** PIGG's per-user k-fold summary: mean and population std of each fold figure (folds with no value skipped). */
export function userSummary(userId: string, folds: readonly FoldMetrics[]): UserSummary {
  const acc = present(folds.map((f) => f.accuracy));
  const mean = present(folds.map((f) => f.mean_l2));
  const median = present(folds.map((f) => f.median_l2));
  return {
    user_id: userId,
    n_folds: folds.length,
    avg_accuracy: npMean(acc),
    std_accuracy: npStd(acc),
    avg_mean_l2: npMean(mean),
    std_mean_l2: npStd(mean),
    avg_median_l2: npMean(median),
    std_median_l2: npStd(median),
  };
}

export interface OverallSummary {
  n_users: number;
  overall_accuracy: number | null;
  overall_mean_l2: number | null;
  overall_median_l2: number | null;
}

/** PIGG's overall figures: the plain mean over users of their k-fold averages. */
export function overallSummary(users: readonly UserSummary[]): OverallSummary {
  return {
    n_users: users.length,
    overall_accuracy: npMean(present(users.map((u) => u.avg_accuracy))),
    overall_mean_l2: npMean(present(users.map((u) => u.avg_mean_l2))),
    overall_median_l2: npMean(present(users.map((u) => u.avg_median_l2))),
  };
}
