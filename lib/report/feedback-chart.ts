// The learning-from-feedback chart: per user, the accuracy of what the user is served (the user's adapter once one
// is promoted) on that user's unseen screens as the user's taps come in, beside the global model alone on the same
// screens, with the promotions marked. A standalone SVG (draw.ts writeSvgPng renders it to PNG), drawn with the
// report charts' palette, grid and frame (charts.ts); bench/feedback.mjs makes it from a feedback run.
import { escapeXml } from '../util/xml.js';
import { chartSvg, colour, percentGridCanvas, r1 } from './charts.js';

export interface AccuracyPoint {
  /** Feedback taps of the user received so far. */
  taps: number;
  /** acc@140 of what the user is served at that point (the user's adapter once one is promoted). */
  served: number;
  /** acc@140 of the global model alone on the same samples. */
  global: number;
}

export interface UserSeries {
  /** A user id; 'mean' draws the mean over users (black, thicker). */
  user: string;
  points: AccuracyPoint[];
  /** Tap counts at which a new version was promoted. */
  promotions: number[];
}

export function feedbackChartSvg(series: readonly UserSeries[], title = 'Accuracy on each user\'s unseen screens as feedback arrives (acc@140)'): string {
  const left = 56;
  const top = 64;
  const plotW = 560;
  const plotH = 240;
  const legendWidth = series.reduce((w, s) => w + 40 + Math.ceil((s.user === 'mean' ? 4 : 5 + s.user.length) * 7.5), 0) + 74 + 120;
  const width = Math.max(left + plotW + 24, left + legendWidth);
  const height = top + plotH + 56;
  const xMax = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.taps)));
  const x = (v: number) => left + (v / xMax) * plotW;
  const y = (v: number) => top + plotH - v * plotH;
  const parts = percentGridCanvas(width, height, left, left + plotW, y);
  const ticks = [...new Set(series.flatMap((s) => s.points.map((p) => p.taps)))].sort((a, b) => a - b);
  for (const v of ticks) parts.push(`<text x="${r1(x(v))}" y="${top + plotH + 16}" text-anchor="middle">${v}</text>`);
  const users = series.filter((s) => s.user !== 'mean');
  const colourOf = (s: UserSeries) => (s.user === 'mean' ? '#111' : colour(users.indexOf(s)));
  for (const s of [...users, ...series.filter((s) => s.user === 'mean')]) {
    const colour = colourOf(s);
    const thick = s.user === 'mean' ? 3.5 : 1.6;
    const line = (key: 'served' | 'global', dash: string) =>
      `<polyline points="${s.points.map((p) => `${r1(x(p.taps))},${r1(y(p[key]))}`).join(' ')}" fill="none" stroke="${colour}" stroke-width="${thick}"${dash}/>`;
    parts.push(line('global', ' stroke-dasharray="5 4" stroke-opacity="0.75"'), line('served', ''));
    for (const p of s.points) {
      parts.push(`<circle cx="${r1(x(p.taps))}" cy="${r1(y(p.served))}" r="${s.user === 'mean' ? 4 : 3}" fill="${colour}"><title>${escapeXml(`${s.user === 'mean' ? 'mean over users' : `user ${s.user}`}, after ${p.taps} taps: served ${(p.served * 100).toFixed(1)}%, global ${(p.global * 100).toFixed(1)}%`)}</title></circle>`);
    }
    // Users promoted at the same tap count: their marks side by side.
    const shift = (users.indexOf(s) - (users.length - 1) / 2) * 7;
    for (const p of s.promotions) parts.push(`<path d="M${r1(x(p) + shift)} ${top + plotH} l-3.5 7 h7 z" fill="${colour}"><title>${escapeXml(`user ${s.user}: a new version after ${p} taps`)}</title></path>`);
  }
  parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`);
  parts.push(`<text x="${left + plotW / 2}" y="${height - 10}" text-anchor="middle">feedback taps received from the user (▲ a new adapter promoted)</text>`);
  parts.push(`<text x="${left}" y="18" font-weight="bold">${escapeXml(title)}</text>`);
  let cx = left;
  const legend: string[] = [];
  for (const s of series) {
    const label = s.user === 'mean' ? 'mean' : `user ${s.user}`;
    legend.push(`<line x1="${cx}" x2="${cx + 18}" y1="38" y2="38" stroke="${colourOf(s)}" stroke-width="${s.user === 'mean' ? 3.5 : 2}"/><text x="${cx + 22}" y="42">${escapeXml(label)}</text>`);
    cx += 40 + Math.ceil(label.length * 7.5);
  }
  legend.push(`<line x1="${cx}" x2="${cx + 18}" y1="38" y2="38" stroke="#666" stroke-width="2"/><text x="${cx + 22}" y="42">served</text>`);
  cx += 74;
  legend.push(`<line x1="${cx}" x2="${cx + 18}" y1="38" y2="38" stroke="#666" stroke-width="2" stroke-dasharray="5 4"/><text x="${cx + 22}" y="42">global model</text>`);
  parts.push(...legend);
  return chartSvg(width, height, parts, title);
}
