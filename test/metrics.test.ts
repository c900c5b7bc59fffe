import { describe, expect, it } from 'vitest';
import {
  foldMetrics,
  fromGrid,
  l2,
  npMean,
  npMedian,
  npStd,
  npSum,
  overallSummary,
  pointInBox,
  pointToGrid,
  roundHalfEven,
  scoreGrid,
  scoreSample,
  toGrid,
  userSummary,
  type FoldMetrics,
} from '../lib/data/metrics.js';
import type { Point } from '../lib/data/types.js';

describe('grid conversion', () => {
  it("maps PIGG's documented example (1080x2340, click (336, 1267)) to [311, 541]", () => {
    expect(pointToGrid({ x: 336, y: 1267 }, 1080, 2340)).toEqual({ x: 311, y: 541 });
  });

  it('rounds half to even like Python round()', () => {
    expect(toGrid(1, 2000)).toBe(0); // 0.5
    expect(toGrid(3, 2000)).toBe(2); // 1.5
    expect(toGrid(5, 2000)).toBe(2); // 2.5
    expect(roundHalfEven(-1.5)).toBe(-2);
    expect(roundHalfEven(2.5000001)).toBe(3);
  });

  it('clamps to [0, 1000]', () => {
    expect(toGrid(-5, 100)).toBe(0);
    expect(toGrid(1200, 1000)).toBe(1000);
  });

  it('maps back without rounding', () => {
    expect(fromGrid(500, 1080)).toBe(540);
    expect(fromGrid(541, 2340)).toBeCloseTo(1265.94, 9);
    expect(() => fromGrid(1, 0)).toThrow(/size/);
    expect(() => toGrid(1, -3)).toThrow(/size/);
  });
});

describe('numpy-compatible statistics', () => {
  it('median of odd and even counts', () => {
    expect(npMedian([5, 1, 3])).toBe(3);
    expect(npMedian([4, 1, 3, 2])).toBe(2.5);
    expect(npMedian([0, 100, 140, 500])).toBe(120);
    expect(npMedian([])).toBeNull();
  });

  it('population std (ddof=0)', () => {
    expect(npStd([2, 4, 4, 4, 5, 5, 7, 9])).toBe(2);
    expect(npStd([0.5, 0.6, 0.7])).toBe(0.08164965809277258);
    expect(npStd([7])).toBe(0);
  });

  it('pairwise summation matches numpy where naive summation does not', () => {
    // 0.1 * 10: numpy's 8-accumulator sum gives 1.0, a left-to-right loop 0.9999999999999999.
    const tenths = Array.from({ length: 10 }, () => 0.1);
    expect(npSum(tenths)).toBe(1);
    expect(tenths.reduce((a, b) => a + b, 0)).toBe(0.9999999999999999);
    expect(npMean([1, 2, 3, 4])).toBe(2.5);
    expect(npMean([])).toBeNull();
  });

  it('l2 and inclusive point-in-box', () => {
    expect(l2({ x: 0, y: 0 }, { x: 3, y: 4 })).toBe(5);
    expect(pointInBox({ x: 10, y: 20 }, [10, 20, 30, 40])).toBe(true);
    expect(pointInBox({ x: 30.01, y: 20 }, [10, 20, 30, 40])).toBe(false);
  });
});

describe('fold metrics', () => {
  const gt: Point = { x: 500, y: 500 };
  const preds: Array<Point | null> = [
    { x: 500, y: 500 }, // 0
    { x: 600, y: 500 }, // 100
    { x: 500, y: 640 }, // 140: a hit, the threshold is inclusive
    { x: 800, y: 900 }, // 500
    null, // parse failure
  ];

  it("'pigg' mode scores a failure as (0, 0)", () => {
    const m = foldMetrics(preds.map((p) => scoreGrid(p, gt, { mode: 'pigg' })));
    expect(m.n).toBe(5);
    expect(m.parse_failures).toBe(1);
    expect(m.accuracy).toBe(0.6);
    expect(m.mean_l2).toBe(289.4213562373095);
    expect(m.median_l2).toBe(140);
  });

  it("'strict' mode counts a failure as a miss but leaves it out of L2", () => {
    const m = foldMetrics(preds.map((p) => scoreGrid(p, gt, { mode: 'strict' })));
    expect(m.accuracy).toBe(0.6);
    expect(m.mean_l2).toBe(185);
    expect(m.median_l2).toBe(120);
    expect(m.parse_failures).toBe(1);
    expect(m.n).toBe(5);
  });

  it('default mode is pigg and delta is 140', () => {
    expect(scoreGrid(null, gt)).toMatchObject({ pred: { x: 0, y: 0 }, parsed: false, hit: false });
    expect(scoreGrid({ x: 500, y: 640.001 }, gt).hit).toBe(false);
    expect(scoreGrid({ x: 500, y: 640.001 }, gt, { delta: 141 }).hit).toBe(true);
  });

  it('an empty fold has no figures', () => {
    expect(foldMetrics([])).toMatchObject({ n: 0, accuracy: null, mean_l2: null, median_l2: null });
  });
});

describe('scoreSample on a canonical sample', () => {
  const sample = { width: 1080, height: 2340, target: { x: 336, y: 1267 }, bbox: [300, 1200, 372, 1334] as [number, number, number, number] };

  it('grid, pixel and bbox figures', () => {
    const s = scoreSample(sample, { x: 311, y: 541 });
    expect(s.gt).toEqual({ x: 311, y: 541 });
    expect(s.l2).toBe(0);
    expect(s.pixel_l2).toBeCloseTo(1.0667708282475128, 9);
    expect(s.in_bbox).toBe(true);
  });

  it('the grid threshold is anisotropic in pixels: 140 grid units on y is 327.6 px here', () => {
    const s = scoreSample(sample, { x: 311, y: 681 });
    expect(s.hit).toBe(true);
    expect(s.pixel_l2).toBeCloseTo(Math.hypot(0.12, 681 * 2.34 - 1267), 6);
    expect(s.in_bbox).toBe(false);
  });

  it('failures: pigg scores (0,0) in pixels too, strict has no pixel L2', () => {
    const pigg = scoreSample(sample, null);
    expect(pigg.pixel_l2).toBeCloseTo(Math.hypot(336, 1267), 9);
    expect(pigg.in_bbox).toBe(false);
    const strict = scoreSample(sample, null, { mode: 'strict' });
    expect(strict).toMatchObject({ l2: null, pixel_l2: null, in_bbox: false, hit: false });
  });

  it('no bbox gives in_bbox null and bbox_n 0', () => {
    const m = foldMetrics([scoreSample({ ...sample, bbox: null }, { x: 311, y: 541 }), scoreSample(sample, { x: 0, y: 0 })]);
    expect(m.bbox_n).toBe(1);
    expect(m.bbox_accuracy).toBe(0);
    expect(m.pixel_mean_l2).toBeCloseTo((1.0667708282475128 + Math.hypot(336, 1267)) / 2, 9);
  });
});

describe('user and overall summaries', () => {
  const fold = (accuracy: number, mean: number, median: number): FoldMetrics => ({
    accuracy,
    mean_l2: mean,
    median_l2: median,
    n: 10,
    parse_failures: 0,
    pixel_mean_l2: null,
    pixel_median_l2: null,
    bbox_accuracy: null,
    bbox_n: 0,
  });

  it('mean and population std over folds', () => {
    const u = userSummary('1', [fold(0.5, 100, 10), fold(0.6, 200, 20), fold(0.7, 300, 60)]);
    expect(u.user_id).toBe('1');
    expect(u.n_folds).toBe(3);
    expect(u.avg_accuracy).toBeCloseTo(0.6, 15);
    expect(u.std_accuracy).toBeCloseTo(0.08164965809277258, 15);
    expect(u.avg_mean_l2).toBe(200);
    expect(u.std_mean_l2).toBe(81.64965809277261);
    expect(u.avg_median_l2).toBe(30);
    expect(u.std_median_l2).toBe(21.602468994692867);
  });

  it('overall is the plain mean over users', () => {
    const a = userSummary('1', [fold(0.6, 100, 50)]);
    const b = userSummary('2', [fold(0.4, 300, 150), fold(0.4, 300, 250)]);
    expect(overallSummary([a, b])).toEqual({
      n_users: 2,
      overall_accuracy: 0.5,
      overall_mean_l2: 200,
      overall_median_l2: 125,
    });
  });
});
