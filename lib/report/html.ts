// `pigg report`: one self-contained HTML page (inline CSS and SVG, no scripts, no external assets) comparing every
// experiment under a results folder, plus PNG copies of its charts beside it: accuracy per user and experiment, the
// L2 distribution, and (when the results hold a global and a personalized run) global vs personalized per user.
//
// Figures are always recomputed from out.json; summaries other tools wrote are only checked against them, and
// any disagreement is listed at the top of the page. Summaries checked (fields compared when present):
//  - <run>/summary.json beside out.json: accuracy (or click_acc_140), mean_l2, median_l2, n, parse_failures;
//  - user_<id>_summary.json in <experiment>/ (PIGG) or <experiment>/user_<id>/ (pigg's runs): the same, or PIGG's
//    k-fold fields avg_/std_accuracy, avg_/std_mean_l2, avg_/std_median_l2, n_folds, and a `folds` array checked
//    fold by fold;
//  - <experiment>/summary.json, at top level and inside `overall`: overall_accuracy/_mean_l2/_median_l2 (mean over
//    users, as PIGG reports), accuracy/mean_l2/median_l2 (accepted as either the mean over users or pooled over
//    samples), n, parse_failures, n_users; and a per-user breakdown under `users` or `per_user` (an array of objects
//    with user_id or user, or an object keyed by user id) checked like user summaries.
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { l2, overallSummary, PIGG_DELTA, userSummary, type FoldMetrics, type UserSummary } from '../data/metrics.js';
import { writeFileAtomic } from '../atomic.js';
import { escapeXml, writeSvgPng } from './draw.js';
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

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

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
function compare(file: string, summary: Json, expected: Record<string, Array<number | null>>, prefix = ''): Flag[] {
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
function compareUser(file: string, entry: Json, user: UserReport, prefix: string): Flag[] {
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
async function readSummary(file: string, flags: Flag[]): Promise<Json | null> {
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

function breakdownEntries(value: unknown): Array<[string, Json]> | null {
  if (Array.isArray(value)) {
    return value.flatMap((e): Array<[string, Json]> => {
      const id = isObject(e) ? (e.user_id ?? e.user) : undefined;
      return isObject(e) && (typeof id === 'string' || typeof id === 'number') ? [[String(id), e]] : [];
    });
  }
  if (isObject(value)) return Object.entries(value).flatMap(([k, e]): Array<[string, Json]> => (isObject(e) ? [[k, e]] : []));
  return null;
}

async function checkExperiment(report: ExperimentReport, flags: Flag[]): Promise<number> {
  let checked = 0;
  const take = async (file: string): Promise<Json | null> => {
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

// ---- formatting -------------------------------------------------------------------------------------------

export const fmtPct = (v: number | null) => (v === null ? '–' : `${(v * 100).toFixed(2)}%`);
export const fmtL2 = (v: number | null) => (v === null ? '–' : v.toFixed(2));
const pm = (avg: string, std: number | null, scale: number) => (std === null || avg === '–' ? avg : `${avg} ± ${(std * scale).toFixed(2)}`);

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
const colour = (i: number) => PALETTE[i % PALETTE.length]!;
const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const r1 = (v: number) => String(Math.round(v * 10) / 10);

/** A colour swatch and name per series (the palette's colours unless given), then an optional grey note. */
function legend(names: string[], x: number, y: number, colours: string[] = names.map((_, i) => colour(i)), note?: string): string {
  let cx = x;
  const items = names.map((name, i) => {
    const item = `<rect x="${cx}" y="${y - 10}" width="12" height="12" fill="${colours[i]}"/><text x="${cx + 16}" y="${y}">${escapeXml(name)}</text>`;
    cx += 28 + Math.ceil(name.length * 7.2);
    return item;
  });
  return items.join('') + (note === undefined ? '' : `<text x="${cx}" y="${y}" fill="#555">${escapeXml(note)}</text>`);
}

/**
 * The frame both bar charts share: a white canvas, the 0-100% grid and labels, and the x of each group's first bar.
 * Groups widen to fill a minimum plot width, so a few users do not leave the chart mostly empty.
 */
function barFrame(o: { groups: number; bars: number; barW: number; gap: number; top: number; plotH: number }) {
  const { top, plotH } = o;
  const left = 56;
  const groupW = Math.max(o.bars * o.barW + o.gap, (640 - left - 20) / o.groups);
  const width = Math.max(640, Math.ceil(left + o.groups * groupW + 20));
  const height = top + plotH + 48;
  const y = (v: number) => top + plotH - v * plotH;
  const parts: string[] = [`<rect width="${width}" height="${height}" fill="white"/>`];
  for (let t = 0; t <= 100; t += 20) {
    parts.push(
      `<line x1="${left}" x2="${width - 10}" y1="${r1(y(t / 100))}" y2="${r1(y(t / 100))}" stroke="#ddd"/>` +
        `<text x="${left - 6}" y="${r1(y(t / 100) + 4)}" text-anchor="end">${t}%</text>`,
    );
  }
  const groupX = (gi: number) => Math.round(left + gi * groupW + (groupW - o.bars * o.barW) / 2);
  return { left, width, height, top, plotH, y, groupX, parts };
}

/** Grouped bars: accuracy per user (and the mean over users) per experiment, with ± std whiskers for k-fold runs. */
export function accuracyChartSvg(report: Report): string {
  const exps = report.experiments;
  const users = [...new Set(exps.flatMap((e) => e.users.map((u) => u.user)))];
  const groups = [...users.map((u) => ({ label: `user ${u}`, user: u })), { label: 'mean', user: null }];
  const barW = 14;
  const { left, width, height, top, plotH, y, groupX, parts } = barFrame({ groups: groups.length, bars: exps.length, barW, gap: 16, top: 60, plotH: 260 });
  groups.forEach((g, gi) => {
    const gx = groupX(gi);
    exps.forEach((e, ei) => {
      const u = g.user === null ? null : e.users.find((x) => x.user === g.user);
      const acc = g.user === null ? e.overall.accuracy : (u?.summary.avg_accuracy ?? null);
      if (acc === null) return;
      const x = gx + ei * barW;
      parts.push(`<rect x="${x}" y="${r1(y(acc))}" width="${barW - 2}" height="${r1(acc * plotH)}" fill="${colour(ei)}"><title>${escapeXml(`${e.experiment.name}, ${g.label}: ${fmtPct(acc)}`)}</title></rect>`);
      const std = e.experiment.kind === 'folds' && u ? u.summary.std_accuracy : null;
      if (std) {
        const cx = x + (barW - 2) / 2;
        parts.push(`<line x1="${cx}" x2="${cx}" y1="${r1(y(Math.min(1, acc + std)))}" y2="${r1(y(Math.max(0, acc - std)))}" stroke="#333"/>`);
      }
    });
    parts.push(`<text x="${gx + (exps.length * barW) / 2}" y="${top + plotH + 16}" text-anchor="middle">${escapeXml(g.label)}</text>`);
  });
  parts.push(`<line x1="${left}" x2="${width - 10}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  parts.push(`<text x="${left}" y="18" font-weight="bold">Click accuracy (L2 ≤ ${PIGG_DELTA}) per user</text>`);
  parts.push(legend(exps.map((e) => e.experiment.name), left, 36));
  return svg(width, height, parts, 'Grouped bar chart of click accuracy per user and experiment');
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

const GAIN_UP = '#2e7d32';
const GAIN_DOWN = '#c62828';
/** The colours the accuracy chart gives the two experiments, so both charts read alike. */
export function gainColours(report: Report, data: GainData): [string, string] {
  const at = (name: string) => colour(Math.max(0, report.experiments.findIndex((e) => e.experiment.name === name)));
  return [at(data.baseline), at(data.personalized)];
}

/** Signed percentage points, e.g. "+12.5 pts" or "−3.1 pts". */
export const fmtGain = (v: number | null) => (v === null ? '–' : `${v > 0 ? '+' : v < 0 ? '−' : '±'}${Math.abs(v * 100).toFixed(1)} pts`);

/**
 * Grouped bars per user: the global model's accuracy beside the personalized one's, with the gain written above each
 * pair (green for a gain, red for a loss), and the mean over users last. Each bar and gain label carries its figure
 * in data-* attributes (data-user, data-series = global | personalized | gain, data-value as a fraction).
 */
export function gainChartSvg(data: GainData, colours: [string, string] = [colour(1), colour(2)]): string {
  const groups = [...data.users, data.mean];
  const barW = 22;
  const { left, width, height, top, plotH, y, groupX, parts } = barFrame({ groups: groups.length, bars: 2, barW, gap: 28, top: 72, plotH: 240 });
  groups.forEach((g, gi) => {
    const gx = groupX(gi);
    if (g.user === 'mean') parts.push(`<rect x="${gx - 8}" y="${top - 18}" width="${2 * barW + 14}" height="${plotH + 18}" fill="#f4f4f4"/>`);
    const values: Array<[string, number | null, string]> = [['global', g.global, data.baseline], ['personalized', g.personalized, data.personalized]];
    values.forEach(([series, acc, name], si) => {
      if (acc === null) return;
      parts.push(
        `<rect x="${gx + si * barW}" y="${r1(y(acc))}" width="${barW - 2}" height="${r1(acc * plotH)}" fill="${colours[si]}" ` +
          `data-user="${escapeXml(g.user)}" data-series="${series}" data-value="${acc}"><title>${escapeXml(`${name}, ${g.user === 'mean' ? 'mean over users' : `user ${g.user}`}: ${fmtPct(acc)}`)}</title></rect>`,
      );
    });
    const topAcc = Math.max(g.global ?? 0, g.personalized ?? 0);
    const fill = g.gain === null || g.gain === 0 ? '#555' : g.gain > 0 ? GAIN_UP : GAIN_DOWN;
    parts.push(
      `<text x="${gx + barW}" y="${r1(y(topAcc) - 6)}" text-anchor="middle" font-weight="bold" fill="${fill}" ` +
        `data-user="${escapeXml(g.user)}" data-series="gain" data-value="${g.gain ?? ''}">${escapeXml(fmtGain(g.gain))}</text>`,
    );
    parts.push(`<text x="${gx + barW}" y="${top + plotH + 16}" text-anchor="middle">${escapeXml(g.user === 'mean' ? 'mean' : `user ${g.user}`)}</text>`);
  });
  parts.push(`<line x1="${left}" x2="${width - 10}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  parts.push(`<text x="${left}" y="18" font-weight="bold">Personalization per user: accuracy (L2 ≤ ${PIGG_DELTA}), ${escapeXml(data.baseline)} vs ${escapeXml(data.personalized)}</text>`);
  parts.push(legend([data.baseline, data.personalized], left, 36, colours, 'label: personalized − global'));
  return svg(width, height, parts, `Grouped bar chart of ${data.baseline} vs ${data.personalized} accuracy per user, with the gain`);
}

/** Share of all samples with L2 <= x, per experiment; unscored failures never arrive, so at x = 140 it is the accuracy. */
export function l2CdfSvg(report: Report): string {
  const left = 56;
  const top = 60;
  const plotW = 560;
  const plotH = 260;
  const width = left + plotW + 24;
  const height = top + plotH + 52;
  const series = report.experiments.map((e) => {
    const records = e.users.flatMap((u) => u.runs.flatMap((r) => r.records));
    return { values: records.flatMap((r) => (r.l2 === null ? [] : [r.l2])).sort((a, b) => a - b), n: records.length };
  });
  const maxL2 = Math.max(0, ...series.flatMap((s) => s.values.slice(-1)));
  const xMax = Math.max(200, Math.ceil(maxL2 / 100) * 100);
  const x = (v: number) => left + (v / xMax) * plotW;
  const y = (v: number) => top + plotH - v * plotH;
  const parts: string[] = [`<rect width="${width}" height="${height}" fill="white"/>`];
  for (let t = 0; t <= 100; t += 20) {
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${r1(y(t / 100))}" y2="${r1(y(t / 100))}" stroke="#ddd"/><text x="${left - 6}" y="${r1(y(t / 100) + 4)}" text-anchor="end">${t}%</text>`);
  }
  const step = xMax <= 500 ? 100 : 200;
  for (let v = 0; v <= xMax; v += step) {
    parts.push(`<text x="${r1(x(v))}" y="${top + plotH + 16}" text-anchor="middle">${v}</text>`);
  }
  parts.push(`<line x1="${r1(x(PIGG_DELTA))}" x2="${r1(x(PIGG_DELTA))}" y1="${top}" y2="${top + plotH}" stroke="#888" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="${r1(x(PIGG_DELTA) + 4)}" y="${top + 12}" fill="#666">${PIGG_DELTA}</text>`);
  series.forEach((s, i) => {
    if (s.n === 0) return;
    // One point per pixel column: exact enough to read, small however many samples there are.
    let k = 0;
    const points: string[] = [];
    for (let px = 0; px <= plotW; px++) {
      const v = (px / plotW) * xMax;
      while (k < s.values.length && s.values[k]! <= v) k++;
      points.push(`${left + px},${r1(y(k / s.n))}`);
    }
    parts.push(`<polyline points="${points.join(' ')}" fill="none" stroke="${colour(i)}" stroke-width="2"/>`);
  });
  parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  parts.push(`<text x="${left + plotW / 2}" y="${height - 8}" text-anchor="middle">L2 on the 0–1000 grid</text>`);
  parts.push(`<text x="${left}" y="18" font-weight="bold">Cumulative share of samples with L2 ≤ x</text>`);
  parts.push(legend(report.experiments.map((e) => e.experiment.name), left, 36));
  return svg(width, height, parts, 'Cumulative distribution of L2 per experiment');
}

function svg(width: number, height: number, parts: string[], label: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="${FONT}" font-size="12" role="img" aria-label="${escapeXml(label)}">${parts.join('')}</svg>`
  );
}

// ---- page -------------------------------------------------------------------------------------------------

const td = (text: string, cls = '') => `<td${cls ? ` class="${cls}"` : ''}>${escapeXml(text)}</td>`;
const th = (text: string, attrs = '') => `<th${attrs}>${escapeXml(text)}</th>`;
const row = (cells: string[]) => `<tr>${cells.join('')}</tr>`;
const table = (head: string[], rows: string[]) => `<table><thead>${head.join('')}</thead><tbody>${rows.join('')}</tbody></table>`;

function overallTable(report: Report): string {
  const head = row(
    ['Experiment', 'Kind', 'Users', 'n', 'Parse failures', 'Accuracy', 'Mean L2', 'Median L2', 'Pooled accuracy', 'Pooled mean L2', 'Pooled median L2'].map((h) => th(h)),
  );
  const rows = report.experiments.map((e) =>
    row([
      td(e.experiment.name, 'name'),
      td(e.experiment.kind === 'folds' ? 'k-fold' : 'single'),
      td(String(e.users.length)),
      td(String(e.pooled.n)),
      td(String(e.pooled.parse_failures)),
      td(fmtPct(e.overall.accuracy)),
      td(fmtL2(e.overall.mean_l2)),
      td(fmtL2(e.overall.median_l2)),
      td(fmtPct(e.pooled.accuracy)),
      td(fmtL2(e.pooled.mean_l2)),
      td(fmtL2(e.pooled.median_l2)),
    ]),
  );
  return table([head], rows);
}

function perUserTable(report: Report): string {
  const exps = report.experiments;
  const head1 = row([th('User', ' rowspan="2"'), ...exps.map((e) => th(e.experiment.name, ' colspan="4"'))]);
  const head2 = row(exps.flatMap(() => ['Accuracy', 'Mean L2', 'Median L2', 'n'].map((h) => th(h))));
  const users = [...new Set(exps.flatMap((e) => e.users.map((u) => u.user)))];
  const rows = users.map((user) =>
    row([
      td(user, 'name'),
      ...exps.flatMap((e) => {
        const u = e.users.find((x) => x.user === user);
        if (!u) return [td('–'), td('–'), td('–'), td('–')];
        const s = u.summary;
        const folds = e.experiment.kind === 'folds';
        return [
          td(folds ? pm(fmtPct(s.avg_accuracy), s.std_accuracy, 100) : fmtPct(s.avg_accuracy)),
          td(folds ? pm(fmtL2(s.avg_mean_l2), s.std_mean_l2, 1) : fmtL2(s.avg_mean_l2)),
          td(folds ? pm(fmtL2(s.avg_median_l2), s.std_median_l2, 1) : fmtL2(s.avg_median_l2)),
          td(String(u.n)),
        ];
      }),
    ]),
  );
  return table([head1, head2], rows);
}

function foldTable(e: ExperimentReport): string {
  const head = row(['User', 'Fold', 'n', 'Parse failures', 'Accuracy', 'Mean L2', 'Median L2'].map((h) => th(h)));
  const rows = e.users.flatMap((u) => [
    ...u.runs.map((r) =>
      row([
        td(u.user, 'name'),
        td(String(r.run.fold)),
        td(String(r.metrics.n)),
        td(String(r.metrics.parse_failures)),
        td(fmtPct(r.metrics.accuracy)),
        td(fmtL2(r.metrics.mean_l2)),
        td(fmtL2(r.metrics.median_l2)),
      ]),
    ),
    `<tr class="avg">${[
      td(u.user, 'name'),
      td(`avg ± std (${u.summary.n_folds} folds)`),
      td(String(u.n)),
      td(String(u.parse_failures)),
      td(pm(fmtPct(u.summary.avg_accuracy), u.summary.std_accuracy, 100)),
      td(pm(fmtL2(u.summary.avg_mean_l2), u.summary.std_mean_l2, 1)),
      td(pm(fmtL2(u.summary.avg_median_l2), u.summary.std_median_l2, 1)),
    ].join('')}</tr>`,
  ]);
  return table([head], rows);
}

function flagSection(report: Report): string {
  if (report.flags.length === 0) {
    return `<p class="ok">All ${report.checked} summary file${report.checked === 1 ? '' : 's'} found agree with their out.json, and every record's l2 and hit follow from its gt and pred.</p>`;
  }
  const rows = report.flags.map((f) => row([td(f.file, 'path'), td(f.field), td(f.summary), td(f.recomputed)]));
  return (
    `<div class="flags"><p><strong>${report.flags.length} disagreement${report.flags.length === 1 ? '' : 's'}</strong>: summaries that do not ` +
    `match their out.json, or out.json records whose l2 or hit do not follow from their gt and pred (${report.checked} summary ` +
    `file${report.checked === 1 ? '' : 's'} checked). The tables below use the figures recomputed from out.json.</p>` +
    table([row(['File', 'Field', 'Summary says', 'out.json gives'].map((h) => th(h)))], rows) +
    '</div>'
  );
}

const FAILURE_EXAMPLES = 5;
const OUTPUT_CHARS = 400;

function failureSection(report: Report): string {
  const rows = report.experiments.flatMap((e) =>
    e.users
      .flatMap((u) => u.runs.flatMap((r) => r.records.filter((rec) => rec.pred === null).map((rec) => ({ u, r, rec }))))
      .slice(0, FAILURE_EXAMPLES)
      .map(({ u, r, rec }) => {
        const output = rec.output ?? '';
        const cut = output.length > OUTPUT_CHARS ? `${output.slice(0, OUTPUT_CHARS)}…` : output;
        const where = r.run.fold === null ? `user ${u.user}` : `user ${u.user}, fold ${r.run.fold}`;
        return row([td(e.experiment.name, 'name'), td(where), td(rec.id, 'path'), td(rec.referring ?? '–'), `<td><pre>${escapeXml(cut)}</pre></td>`]);
      }),
  );
  if (rows.length === 0) return '<p>No parse failures.</p>';
  return table([row(['Experiment', 'Run', 'Sample', 'Referring', 'Output'].map((h) => th(h)))], rows);
}

const CSS = `body{font-family:${FONT};margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc;padding-bottom:4px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.name,td.path{text-align:left}td.path{font-family:monospace;font-size:12px;word-break:break-all}
tr.avg td{background:#f7f7ff;font-weight:bold}pre{margin:0;white-space:pre-wrap;text-align:left;max-width:600px;font-size:12px}
.flags{border:2px solid #d33;background:#fff4f4;padding:8px 12px}.ok{color:#286a28}.note{color:#555;font-size:13px}
figure{margin:12px 0}figcaption{font-size:12px;color:#555}td.up{color:#2e7d32;font-weight:bold}td.down{color:#c62828;font-weight:bold}`;

export interface ChartFiles {
  accuracy: string;
  cdf: string;
  /** The per-user global vs personalized chart, when the results hold both. */
  gain?: string;
}

function gainTable(data: GainData): string {
  const head = row(['User', `${data.baseline} accuracy`, `${data.personalized} accuracy`, 'Gain', `${data.baseline} mean L2`, `${data.personalized} mean L2`].map((h) => th(h)));
  const rows = [...data.users, data.mean].map((g) => {
    const cells = [
      td(g.user, 'name'), td(fmtPct(g.global)), td(fmtPct(g.personalized)),
      td(fmtGain(g.gain), g.gain === null || g.gain === 0 ? '' : g.gain > 0 ? 'up' : 'down'), td(fmtL2(g.globalMeanL2)), td(fmtL2(g.personalizedMeanL2)),
    ];
    return g.user === 'mean' ? `<tr class="avg">${cells.join('')}</tr>` : row(cells);
  });
  return table([head], rows);
}

function gainSection(data: GainData | null, chart: string | undefined, png: string | undefined): string {
  if (!data || !chart) return '<p class="note">No per-user comparison: it needs a one-shot experiment (the global model) and a k-fold one (personalized) over the same users.</p>';
  const users = data.users.length;
  const up = data.users.filter((u) => u.gain !== null && u.gain > 0).length;
  return `<p class="note">${escapeXml(data.personalized)} against ${escapeXml(data.baseline)} on the same users' samples (each user's k-fold
average against the one-shot run): personalized is better for ${up} of ${users} user${users === 1 ? '' : 's'}.</p>
<figure>${chart}<figcaption>Label above each pair: personalized − global accuracy in percentage points.${png ? ` PNG: <a href="${escapeXml(png)}">${escapeXml(png)}</a>` : ''}</figcaption></figure>
${gainTable(data)}`;
}

/** The whole page; chart PNG names (relative to the page) are linked from the figure captions. */
export function renderHtml(report: Report, charts: { accuracy: string; cdf: string; gain?: string }, pngs: ChartFiles,
  gains: GainData | null = personalGains(report)): string {
  const folds = report.experiments.filter((e) => e.experiment.kind === 'folds');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PIGG report: ${escapeXml(report.resultsDir)}</title><style>${CSS}</style></head>
<body>
<h1>PIGG grounding report</h1>
<p class="note">Results: <code>${escapeXml(report.resultsDir)}</code>. L2 is measured on the 0–1000 grid; a click is a hit when L2 ≤ ${PIGG_DELTA}.
Accuracy, mean L2 and median L2 are the mean over users of each user's figure (for k-fold runs, of the user's fold
averages), as PIGG reports them; pooled figures take all samples at once. All figures are recomputed from out.json.</p>
<h2>Summary checks</h2>
${flagSection(report)}
<h2>Overall</h2>
${overallTable(report)}
<h2>Per user</h2>
<figure>${charts.accuracy}<figcaption>Whiskers: ± std over folds. PNG: <a href="${escapeXml(pngs.accuracy)}">${escapeXml(pngs.accuracy)}</a></figcaption></figure>
${perUserTable(report)}
<h2>Personalization gain per user</h2>
${gainSection(gains, charts.gain, pngs.gain)}
${folds.map((e) => `<h2>Per fold: ${escapeXml(e.experiment.name)}</h2>\n${foldTable(e)}`).join('\n')}
<h2>L2 distribution</h2>
<figure>${charts.cdf}<figcaption>Share of all samples (parse failures included) with L2 ≤ x; at x = ${PIGG_DELTA} it equals the pooled accuracy. PNG: <a href="${escapeXml(pngs.cdf)}">${escapeXml(pngs.cdf)}</a></figcaption></figure>
<h2>Unparseable outputs</h2>
<p class="note">Up to ${FAILURE_EXAMPLES} per experiment.</p>
${failureSection(report)}
</body></html>
`;
}

export interface WrittenReport {
  html: string;
  pngs: string[];
  report: Report;
}

/**
 * Builds the report and writes <out> (default <results>/report.html) plus <name>-accuracy.png, <name>-l2-cdf.png and,
 * when the results hold a global and a personalized experiment, <name>-gain.png beside it.
 */
export async function writeReport(resultsDir: string, outFile = join(resultsDir, 'report.html')): Promise<WrittenReport> {
  const report = await buildReport(resultsDir);
  const stem = basename(outFile, extname(outFile));
  const gains = personalGains(report);
  const names: ChartFiles = { accuracy: `${stem}-accuracy.png`, cdf: `${stem}-l2-cdf.png`, ...(gains ? { gain: `${stem}-gain.png` } : {}) };
  const charts = { accuracy: accuracyChartSvg(report), cdf: l2CdfSvg(report), ...(gains ? { gain: gainChartSvg(gains, gainColours(report, gains)) } : {}) };
  const pngs = [join(dirname(outFile), names.accuracy), join(dirname(outFile), names.cdf)];
  await writeSvgPng(charts.accuracy, pngs[0]!);
  await writeSvgPng(charts.cdf, pngs[1]!);
  if (charts.gain && names.gain) {
    pngs.push(join(dirname(outFile), names.gain));
    await writeSvgPng(charts.gain, pngs[2]!);
  }
  await writeFileAtomic(outFile, renderHtml(report, charts, names, gains));
  return { html: outFile, pngs, report };
}
