// The report's charts as standalone SVG (lib/report/draw.ts writeSvgPng renders them to PNG): accuracy per user and
// experiment, global vs personalized per user, and the L2 distribution. They share one palette, font, 0-100% grid,
// frame and legend so they read alike; the feedback chart (feedback-chart.ts) takes the palette, grid and frame.
import { PIGG_DELTA } from '../data/metrics.js';
import { escapeXml } from '../util/xml.js';
import { fmtGain, fmtPct } from './format.js';
import type { GainData, Report } from './model.js';

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
/** The i-th series' colour (the palette repeats after ten). */
export const colour = (i: number) => PALETTE[i % PALETTE.length]!;
export const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
/** A coordinate rounded to 0.1 px, so the SVG text is short and stable. */
export const r1 = (v: number) => String(Math.round(v * 10) / 10);

/** A white canvas and the 0-100% grid (a line and a label every 20%) from x = left to x = right. */
export function percentGridCanvas(width: number, height: number, left: number, right: number, y: (v: number) => number): string[] {
  const parts: string[] = [`<rect width="${width}" height="${height}" fill="white"/>`];
  for (let t = 0; t <= 100; t += 20) {
    parts.push(
      `<line x1="${left}" x2="${right}" y1="${r1(y(t / 100))}" y2="${r1(y(t / 100))}" stroke="#ddd"/>` +
        `<text x="${left - 6}" y="${r1(y(t / 100) + 4)}" text-anchor="end">${t}%</text>`,
    );
  }
  return parts;
}

/** The chart's outer element: size, font and an accessible label around the parts. */
export function chartSvg(width: number, height: number, parts: string[], label: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="${FONT}" font-size="12" role="img" aria-label="${escapeXml(label)}">${parts.join('')}</svg>`
  );
}

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
  const parts = percentGridCanvas(width, height, left, width - 10, y);
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
  return chartSvg(width, height, parts, 'Grouped bar chart of click accuracy per user and experiment');
}

const GAIN_UP = '#2e7d32';
const GAIN_DOWN = '#c62828';
/** The colours the accuracy chart gives the two experiments, so both charts read alike. */
export function gainColours(report: Report, data: GainData): [string, string] {
  const at = (name: string) => colour(Math.max(0, report.experiments.findIndex((e) => e.experiment.name === name)));
  return [at(data.baseline), at(data.personalized)];
}


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
  return chartSvg(width, height, parts, `Grouped bar chart of ${data.baseline} vs ${data.personalized} accuracy per user, with the gain`);
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
  const parts = percentGridCanvas(width, height, left, left + plotW, y);
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
  return chartSvg(width, height, parts, 'Cumulative distribution of L2 per experiment');
}
