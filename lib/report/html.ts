// `pigg report`: one self-contained HTML page (inline CSS and SVG, no scripts, no external assets) comparing every
// experiment under a results folder, plus PNG copies of its charts beside it: accuracy per user and experiment, the
// L2 distribution, and (when the results hold a global and a personalized run) global vs personalized per user.
// The figures and the summary checks come from model.ts, the charts from charts.ts; this file lays out the page.
import { basename, dirname, extname, join } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import { PIGG_DELTA } from '../data/metrics.js';
import { escapeXml } from '../util/xml.js';
import { accuracyChartSvg, FONT, gainChartSvg, gainColours, l2CdfSvg } from './charts.js';
import { writeSvgPng } from './draw.js';
import { fmtGain, fmtL2, fmtPct } from './format.js';
import { buildReport, personalGains, type ExperimentReport, type GainData, type Report } from './model.js';

/** "avg ± std" with std scaled like avg (100 for percentages); avg alone when there is no std. */
const pm = (avg: string, std: number | null, scale: number) => (std === null || avg === '–' ? avg : `${avg} ± ${(std * scale).toFixed(2)}`);

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
