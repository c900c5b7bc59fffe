// The report's model: every run under a results folder read back with its figures recomputed from out.json, the
// summaries other tools wrote checked against those figures, and the per-user personalization gain. charts.ts draws
// it; html.ts lays it out as a page.
//
// Summaries are only checked, never trusted: each disagreement becomes a Flag, listed at the top of the page.
// Summaries checked (fields compared when present):
//  - <run>/summary.json beside out.json: accuracy (or click_acc_140), mean_l2, median_l2, n, parse_failures;
//  - user_<id>_summary.json in <experiment>/ (PIGG) or <experiment>/user_<id>/ (pigg's runs): the same, or PIGG's
//    k-fold fields avg_/std_accuracy, avg_/std_mean_l2, avg_/std_median_l2, n_folds, and a `folds` array checked
//    fold by fold;
//  - <experiment>/summary.json, at top level and inside `overall`: overall_accuracy/_mean_l2/_median_l2 (mean over
//    users, as PIGG reports), accuracy/mean_l2/median_l2 (accepted as either the mean over users or pooled over
//    samples), n, parse_failures, n_users; and a per-user breakdown under `users` or `per_user` (an array of objects
//    with user_id or user, or an object keyed by user id) checked like user summaries.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { l2, overallSummary, PIGG_DELTA, userSummary, type FoldMetrics, type UserSummary } from '../data/metrics.js';
import { isObject, type JsonObject } from '../util/json.js';
import { discoverExperiments, readResultRecords, recordMetrics, type Experiment, type ResultRecord, type Run } from './results.js';

export interface RunReport {
  run: Run;
  records: ResultRecord[];
  metrics: FoldMetrics;
}

export interface UserReport {
  user: string;
  runs: RunReport[];
  /** Mean and population std over the runs (one run: std 0), as PIGG's k-fold summary. */
  summary: UserSummary;
  n: number;
  parse_failures: number;
}

export interface ExperimentReport {
  experiment: Experiment;
  users: UserReport[];
  /** Mean over users of each user's figure: how PIGG reports overall results. */
  overall: { accuracy: number | null; mean_l2: number | null; median_l2: number | null };
  /** Over all samples of all users (and folds) at once. */
  pooled: FoldMetrics;
}

export interface Flag {
  file: string;
  field: string;
  summary: string;
  recomputed: string;
}

export interface Report {
  resultsDir: string;
  experiments: ExperimentReport[];
  flags: Flag[];
  /** Summary files found and checked. */
  checked: number;
}

/** Allowed gap between a summary value and ours: half a unit in the last decimal the summary wrote (so rounded
 * summaries pass), or float noise for full-precision ones. */
function agrees(written: unknown, ours: number | null): boolean {
  if (ours === null || written === null) return ours === written;
  if (typeof written !== 'number') return false;
  const decimals = /(?:\.(\d+))?(?:e([+-]\d+))?$/i.exec(String(written));
  const places = (decimals?.[1]?.length ?? 0) - Number(decimals?.[2] ?? 0);
  // An integer-valued summary is taken as exact: JSON cannot tell 1 from 1.0, and accuracy 0 must not pass for 0.4.
  const tolerance = Math.max(places > 0 && places < 15 ? 0.5 * 10 ** -places : 0, 1e-9 * Math.max(1, Math.abs(ours)));
  return Math.abs(written - ours) <= tolerance;
}

const show = (v: unknown) => (typeof v === 'number' ? String(v) : JSON.stringify(v) ?? 'missing');

/** Compares the fields a summary holds with ours; each expected key may list several acceptable values. */
function compare(file: string, summary: JsonObject, expected: Record<string, Array<number | null>>, prefix = ''): Flag[] {
  const flags: Flag[] = [];
  for (const [key, values] of Object.entries(expected)) {
    if (!(key in summary)) continue;
    if (!values.some((v) => agrees(summary[key], v))) {
      flags.push({ file, field: prefix + key, summary: show(summary[key]), recomputed: values.map(show).join(' or ') });
    }
  }
  return flags;
}

const runExpected = (m: FoldMetrics): Record<string, Array<number | null>> => ({
  accuracy: [m.accuracy],
  click_acc_140: [m.accuracy],
  mean_l2: [m.mean_l2],
  median_l2: [m.median_l2],
  n: [m.n],
  parse_failures: [m.parse_failures],
});

/** Expected fields of a user entry, under both PIGG's k-fold names and the plain per-run names. */
function userExpected(u: UserReport): Record<string, Array<number | null>> {
  const s = u.summary;
  return {
    accuracy: [s.avg_accuracy],
    click_acc_140: [s.avg_accuracy],
    mean_l2: [s.avg_mean_l2],
    median_l2: [s.avg_median_l2],
    avg_accuracy: [s.avg_accuracy],
    std_accuracy: [s.std_accuracy],
    avg_mean_l2: [s.avg_mean_l2],
    std_mean_l2: [s.std_mean_l2],
    avg_median_l2: [s.avg_median_l2],
    std_median_l2: [s.std_median_l2],
    n_folds: [s.n_folds],
    n: [u.n],
    parse_failures: [u.parse_failures],
  };
}

/** A user entry: its own fields, then each entry of a `folds` array against that fold's out.json. */
function compareUser(file: string, entry: JsonObject, user: UserReport, prefix: string): Flag[] {
  const flags = compare(file, entry, userExpected(user), prefix);
  if (Array.isArray(entry.folds)) {
    if (entry.folds.length !== user.runs.length) {
      flags.push({ file, field: `${prefix}folds`, summary: `${entry.folds.length} entries`, recomputed: `${user.runs.length} folds with out.json` });
    } else {
      entry.folds.forEach((fold, i) => {
        if (isObject(fold)) flags.push(...compare(file, fold, runExpected(user.runs[i]!.metrics), `${prefix}folds[${i}].`));
      });
    }
  }
  return flags;
}

/** A summary file's object; an unreadable one is flagged and gives null. */
async function readSummary(file: string, flags: Flag[]): Promise<JsonObject | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    flags.push({ file, field: '(file)', summary: `unreadable: ${(error as Error).message}`, recomputed: '' });
    return null;
  }
  if (isObject(parsed)) return parsed;
  flags.push({ file, field: '(file)', summary: 'not a JSON object', recomputed: '' });
  return null;
}

/** Records whose stored l2 or hit does not follow from their own gt and pred (a failure scores as (0, 0) or not at all). */
function recordFlags(run: RunReport): Flag[] {
  const bad: number[] = [];
  run.records.forEach((r, i) => {
    const from = r.pred ?? [0, 0];
    const dist = l2({ x: from[0], y: from[1] }, { x: r.gt[0], y: r.gt[1] });
    const l2Ok = r.l2 === null ? r.pred === null : Math.abs(r.l2 - dist) <= 1e-6 * Math.max(1, dist);
    const hitOk = r.hit === (r.l2 !== null && r.l2 <= PIGG_DELTA);
    if (!l2Ok || !hitOk) bad.push(i);
  });
  if (bad.length === 0) return [];
  return [
    {
      file: run.run.file,
      field: 'records (l2/hit vs gt/pred)',
      summary: `${bad.length} inconsistent record${bad.length === 1 ? '' : 's'}, first #${bad[0]}`,
      recomputed: 'l2 = L2(gt, pred or (0, 0)), hit = l2 <= 140',
    },
  ];
}

function breakdownEntries(value: unknown): Array<[string, JsonObject]> | null {
  if (Array.isArray(value)) {
    return value.flatMap((e): Array<[string, JsonObject]> => {
      const id = isObject(e) ? (e.user_id ?? e.user) : undefined;
      return isObject(e) && (typeof id === 'string' || typeof id === 'number') ? [[String(id), e]] : [];
    });
  }
  if (isObject(value)) return Object.entries(value).flatMap(([k, e]): Array<[string, JsonObject]> => (isObject(e) ? [[k, e]] : []));
  return null;
}

async function checkExperiment(report: ExperimentReport, flags: Flag[]): Promise<number> {
  let checked = 0;
  const take = async (file: string): Promise<JsonObject | null> => {
    const exists = await stat(file).then((s) => s.isFile(), () => false);
    if (exists) checked++;
    return exists ? readSummary(file, flags) : null;
  };
  for (const user of report.users) {
    for (const run of user.runs) {
      flags.push(...recordFlags(run));
      const file = join(run.run.dir, 'summary.json');
      const summary = await take(file);
      if (summary) flags.push(...compare(file, summary, runExpected(run.metrics)));
    }
    const name = `user_${user.user}_summary.json`;
    for (const file of [join(report.experiment.dir, name), join(report.experiment.dir, `user_${user.user}`, name)]) {
      const summary = await take(file);
      if (summary) flags.push(...compareUser(file, summary, user, ''));
    }
  }
  const file = join(report.experiment.dir, 'summary.json');
  const summary = await take(file);
  if (summary) {
    const { overall, pooled } = report;
    const expected = {
      overall_accuracy: [overall.accuracy],
      overall_mean_l2: [overall.mean_l2],
      overall_median_l2: [overall.median_l2],
      accuracy: [overall.accuracy, pooled.accuracy],
      mean_l2: [overall.mean_l2, pooled.mean_l2],
      median_l2: [overall.median_l2, pooled.median_l2],
      n: [pooled.n],
      parse_failures: [pooled.parse_failures],
      n_users: [report.users.length],
    };
    flags.push(...compare(file, summary, expected));
    if (isObject(summary.overall)) flags.push(...compare(file, summary.overall, expected, 'overall.'));
    const entries = breakdownEntries(summary.users ?? summary.per_user);
    const key = 'users' in summary ? 'users' : 'per_user';
    if (entries) {
      const byUser = new Map(report.users.map((u) => [u.user, u]));
      for (const [id, entry] of entries) {
        const user = byUser.get(id);
        if (!user) {
          flags.push({ file, field: `${key}[${id}]`, summary: 'listed', recomputed: `no out.json for user ${id}` });
        } else {
          flags.push(...compareUser(file, entry, user, `${key}[${id}].`));
          byUser.delete(id);
        }
      }
      for (const id of byUser.keys()) flags.push({ file, field: `${key}[${id}]`, summary: 'missing', recomputed: `user ${id} has results` });
    }
  }
  return checked;
}

/** Reads every run under resultsDir, recomputes all figures and checks the summaries. */
export async function buildReport(resultsDir: string): Promise<Report> {
  const experiments: ExperimentReport[] = [];
  for (const experiment of await discoverExperiments(resultsDir)) {
    const users: UserReport[] = [];
    for (const { user, runs } of experiment.users) {
      const runReports: RunReport[] = [];
      for (const run of runs) {
        const records = await readResultRecords(run.file);
        runReports.push({ run, records, metrics: recordMetrics(records) });
      }
      users.push({
        user,
        runs: runReports,
        summary: userSummary(user, runReports.map((r) => r.metrics)),
        n: runReports.reduce((a, r) => a + r.metrics.n, 0),
        parse_failures: runReports.reduce((a, r) => a + r.metrics.parse_failures, 0),
      });
    }
    const overall = overallSummary(users.map((u) => u.summary));
    experiments.push({
      experiment,
      users,
      overall: { accuracy: overall.overall_accuracy, mean_l2: overall.overall_mean_l2, median_l2: overall.overall_median_l2 },
      pooled: recordMetrics(users.flatMap((u) => u.runs.flatMap((r) => r.records))),
    });
  }
  const flags: Flag[] = [];
  let checked = 0;
  for (const e of experiments) checked += await checkExperiment(e, flags);
  return { resultsDir, experiments, flags, checked };
}

/** One user's figures under the baseline (global) and the personalized experiment, as the gain chart draws them. */
export interface UserGain {
  /** A user id, or 'mean' for the mean over the users both experiments hold. */
  user: string;
  global: number | null;
  personalized: number | null;
  /** personalized - global accuracy (a fraction; null when either is missing). */
  gain: number | null;
  globalMeanL2: number | null;
  personalizedMeanL2: number | null;
}

export interface GainData {
  /** Experiment names: the one-shot baseline and the k-fold personalized run. */
  baseline: string;
  personalized: string;
  /** Users both experiments hold, in the report's order. */
  users: UserGain[];
  /** Mean over those users of each figure (so gain = mean personalized - mean global). */
  mean: UserGain;
}

const meanOf = (values: Array<number | null>): number | null => {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 || present.length < values.length ? null : present.reduce((a, v) => a + v, 0) / present.length;
};
const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : a - b);

/**
 * The per-user comparison PIGG's claim rests on: the personalized (k-fold) experiment against the global model it
 * started from. The baseline is the one-shot experiment named like 'global' (else the last one-shot experiment that
 * is not vanilla, else the last one-shot one); the personalized one is the first k-fold experiment. Null when the
 * results lack either or they share no user.
 */
export function personalGains(report: Report): GainData | null {
  const flat = report.experiments.filter((e) => e.experiment.kind === 'flat');
  const personalized = report.experiments.find((e) => e.experiment.kind === 'folds');
  const baseline =
    flat.find((e) => /global/i.test(e.experiment.name)) ?? flat.filter((e) => !/vanilla/i.test(e.experiment.name)).at(-1) ?? flat.at(-1);
  if (!baseline || !personalized) return null;
  const users = baseline.users.flatMap((g): UserGain[] => {
    const p = personalized.users.find((u) => u.user === g.user);
    if (!p) return [];
    return [{
      user: g.user,
      global: g.summary.avg_accuracy,
      personalized: p.summary.avg_accuracy,
      gain: diff(p.summary.avg_accuracy, g.summary.avg_accuracy),
      globalMeanL2: g.summary.avg_mean_l2,
      personalizedMeanL2: p.summary.avg_mean_l2,
    }];
  });
  if (users.length === 0) return null;
  const global = meanOf(users.map((u) => u.global));
  const pers = meanOf(users.map((u) => u.personalized));
  const mean: UserGain = {
    user: 'mean', global, personalized: pers, gain: diff(pers, global),
    globalMeanL2: meanOf(users.map((u) => u.globalMeanL2)), personalizedMeanL2: meanOf(users.map((u) => u.personalizedMeanL2)),
  };
  return { baseline: baseline.experiment.name, personalized: personalized.experiment.name, users, mean };
}
