// How a candidate is judged: the user's held-out samples, the candidate's and the served version's metrics on them,
// and the rule that promotes it.
//
// The held-out set is time-ordered: the last `holdout` share of the user's samples (at least minHoldout). The
// candidate trains on the samples before it. Because a user's sample count only grows, every earlier version was
// trained on samples before an earlier (so earlier-starting) window, i.e. never on the new held-out samples: the
// candidate and the version served now are compared on samples neither has seen, which PIGG's K-fold (whose test
// folds reshuffle as samples arrive) cannot give for a version trained before. It also asks the question that
// matters when serving: does the candidate answer the user's most recent taps better. And it costs one training
// per decision rather than K.
import type { Sample } from '../data/types.js';
import { scoreRecord, summarize } from '../data/records.js';
import type { Grounder } from '../grounding/grounder.js';
import type { HeldOutMetrics } from './types.js';

const metricsOf = (summary: ReturnType<typeof summarize>): HeldOutMetrics => ({
  accuracy: summary.accuracy, mean_l2: summary.mean_l2, median_l2: summary.median_l2, n: summary.n, parse_failures: summary.parse_failures,
});

/**
 * Whether a candidate beats the baseline on the same held-out samples: higher accuracy (acc@140), or the same
 * accuracy and a lower mean L2. Equal on both is not better (the version served stays).
 */
export function isBetter(candidate: HeldOutMetrics, baseline: HeldOutMetrics): boolean {
  const acc = (m: HeldOutMetrics) => m.accuracy ?? 0;
  if (acc(candidate) !== acc(baseline)) return acc(candidate) > acc(baseline);
  const l2 = (m: HeldOutMetrics) => m.mean_l2 ?? Number.POSITIVE_INFINITY;
  return l2(candidate) < l2(baseline);
}

/** The time-ordered split of n samples: the last max(minHoldout, ceil(n * share)) are held out. */
export function timeSplit(n: number, share: number, minHoldout: number): { train: number; holdout: number } {
  const holdout = Math.min(n, Math.max(minHoldout, Math.ceil(n * share)));
  return { train: n - holdout, holdout };
}

/** The metrics of an adapter (null: the base model) on held-out samples of the dataset folder `dir`. */
export async function heldOutMetrics(grounder: Grounder, samples: readonly Sample[], dir: string, adapter: string | null, batchSize: number, signal: AbortSignal): Promise<HeldOutMetrics> {
  const results = await grounder.groundSamples(samples, dir, { user: adapter, batchSize, signal });
  return metricsOf(summarize(results.map((result, i) => scoreRecord(samples[i]!, result))));
}
