import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { register as registerReport } from '../lib/cli/report.js';
import { register as registerVisualize } from '../lib/cli/visualize.js';
import { writeDataset } from '../lib/data/manifest.js';
import type { Sample } from '../lib/data/types.js';
import { predictionSvg, toleranceRadii } from '../lib/report/draw.js';
import { gainChartSvg } from '../lib/report/charts.js';
import { fmtGain } from '../lib/report/format.js';
import { writeReport } from '../lib/report/html.js';
import { personalGains } from '../lib/report/model.js';
import type { ResultRecord } from '../lib/report/results.js';
import { sanitizeId, visualizeRecords, visualizeRun } from '../lib/report/visualize.js';

const GREY = 128;

/** A record at gt + (dx, dy): pythagorean offsets give whole-number L2s. */
function rec(id: string, dx: number, dy: number, gt: [number, number] = [500, 500]): ResultRecord {
  const d = Math.sqrt(dx * dx + dy * dy);
  return { id, gt, pred: [gt[0] + dx, gt[1] + dy], l2: d, hit: d <= 140, referring: 'button', output: '```grounding\n[1, 2]\n```' };
}
const failure = (id: string, output: string): ResultRecord => ({ id, gt: [500, 500], pred: null, l2: null, hit: false, referring: null, output });

// vanilla  user 1: L2 100, 200 + 1 failure        -> acc 1/3, mean 150, median 150
//          user 2: L2 50, 150, 70 + 1 failure      -> acc 2/4, mean 90, median 70
// global   user 1: L2 10, 20, 30 -> acc 1, mean 20, median 20;  user 2: L2 130, 145 -> acc 1/2, mean 137.5
// personalized user 1: fold 0 L2 40, 160 (acc .5, mean 100, median 100); fold 1 L2 60, 80, 300 (acc 2/3, mean 146.67, median 80)
const RESULTS: Record<string, ResultRecord[]> = {
  'vanilla/user_1': [rec('synth/1/a', 60, 80), rec('synth/1/b', 120, 160), failure('synth/1/c', 'no point here')],
  'vanilla/user_2': [rec('synth/2/a', 30, 40), rec('synth/2/b', 90, 120), rec('synth/2/c', 42, 56), failure('synth/2/d', '<script>alert(1)</script>')],
  'global/user_1': [rec('synth/1/a', 6, 8), rec('synth/1/b', 12, 16), rec('synth/1/c', 18, 24)],
  'global/user_2': [rec('synth/2/a', 78, 104), rec('synth/2/b', 87, 116)],
  'personalized/user_1/fold_0': [rec('synth/1/a', 24, 32), rec('synth/1/b', 96, 128)],
  'personalized/user_1/fold_1': [rec('synth/1/c', 36, 48), rec('synth/1/a', 48, 64), rec('synth/1/b', 180, 240)],
};

let root: string;
let data: string;
let results: string;

function sample(id: string, user: string, image: string, width: number, height: number): Sample {
  return {
    id, source: 'synth', user, episode: 'e', step: 0, image, width, height,
    instruction: 'open the <settings> & more', referring: 'button', target: { x: width / 2, y: height / 2 },
  };
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pigg-report-'));
  data = join(root, 'data');
  results = join(root, 'results');
  const samples = [
    sample('synth/1/a', '1', 'images/a.png', 400, 800),
    sample('synth/1/b', '1', 'images/b.png', 600, 300),
    sample('synth/1/c', '1', 'images/c.png', 400, 800),
    // User 2's images are never written: the missing-image error needs one.
    ...['a', 'b', 'c', 'd'].map((k) => sample(`synth/2/${k}`, '2', `images/2${k}.png`, 400, 800)),
  ];
  await writeDataset(data, { schema: 'gg-sample/1', name: 't', source: 'synth', created_by: 'test', coord_space: 'pixel', users: ['1', '2'], counts: { '1': 3, '2': 4 } }, samples);
  await mkdir(join(data, 'images'), { recursive: true });
  for (const [name, width, height] of [['a', 400, 800], ['b', 600, 300], ['c', 400, 800]] as const) {
    await sharp({ create: { width, height, channels: 3, background: { r: GREY, g: GREY, b: GREY } } }).png().toFile(join(data, 'images', `${name}.png`));
  }
  for (const [dir, records] of Object.entries(RESULTS)) {
    await mkdir(join(results, dir), { recursive: true });
    await writeFile(join(results, dir, 'out.json'), JSON.stringify(records));
  }
  // A rounded but correct run summary, a correct experiment summary and a k-fold user summary with one wrong field.
  await writeFile(join(results, 'vanilla/user_1/summary.json'), JSON.stringify({ accuracy: 0.3333, mean_l2: 150, median_l2: 150, n: 3, parse_failures: 1 }));
  await writeFile(join(results, 'vanilla/summary.json'), JSON.stringify({ overall_accuracy: 0.4167, users: [{ user_id: 1, accuracy: 0.3333 }, { user_id: 2, accuracy: 0.5 }] }));
  await writeFile(join(results, 'personalized/user_1_summary.json'), JSON.stringify({ user_id: 1, n_folds: 2, avg_accuracy: 0.7, avg_mean_l2: 123.3333 }));
  // pigg's own layout: user summary inside the user folder with per-fold figures, overall nested; fold 1's median is wrong.
  const folds = [
    { accuracy: 0.5, mean_l2: 100, median_l2: 100, n: 2, parse_failures: 0 },
    { accuracy: 2 / 3, mean_l2: 440 / 3, median_l2: 80, n: 3, parse_failures: 0 },
  ];
  const user1 = { user_id: '1', n_folds: 2, avg_accuracy: 7 / 12, std_accuracy: 1 / 12, avg_mean_l2: 370 / 3, std_mean_l2: 70 / 3, avg_median_l2: 90, std_median_l2: 10 };
  await writeFile(join(results, 'personalized/user_1/user_1_summary.json'), JSON.stringify({ ...user1, folds }));
  await writeFile(
    join(results, 'personalized/summary.json'),
    JSON.stringify({ experiment: 'personalized', overall: { n_users: 1, overall_accuracy: 7 / 12, overall_mean_l2: 370 / 3, overall_median_l2: 90 }, users: { '1': { ...user1, folds: [folds[0], { ...folds[1], median_l2: 81 }] } } }),
  );
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function pixel(file: string, x: number, y: number): Promise<[number, number, number]> {
  const { data: raw, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * info.channels;
  return [raw[at]!, raw[at + 1]!, raw[at + 2]!];
}
const isGrey = ([r, g, b]: number[]) => [r, g, b].every((c) => Math.abs(c! - GREY) <= 2);
const isGreenTint = ([r, g, b]: number[]) => g! - r! > 30 && g! - b! > 30;
const isRedTint = ([r, g, b]: number[]) => r! - g! > 30 && r! - b! > 30;

describe('visualize', () => {
  it('writes PNGs at the image size with blue GT, red prediction and the elliptical hit region', async () => {
    const out = join(root, 'vis');
    const written = await visualizeRun({ results, data, user: '1', experiment: 'vanilla', samples: [0, 1, 2], out });
    expect(written).toEqual([0, 1, 2].map((i) => join(out, 'user_1', `${i}_synth_1_${'abc'[i]}.png`)));
    const sizes = await Promise.all(written.map((f) => sharp(f).metadata()));
    expect(sizes.map((m) => [m.format, m.width, m.height])).toEqual([['png', 400, 800], ['png', 600, 300], ['png', 400, 800]]);

    // Record 0 on 400x800: GT grid (500, 500) -> px (200, 400), pred (560, 580) -> (224, 464), a hit.
    const [r0, g0, b0] = await pixel(written[0]!, 200, 400);
    expect(b0).toBeGreaterThan(200);
    expect(r0).toBeLessThan(100);
    expect(g0).toBeLessThan(150);
    const [r1, g1, b1] = await pixel(written[0]!, 224, 464);
    expect(r1).toBeGreaterThan(200);
    expect(g1).toBeLessThan(100);
    expect(b1).toBeLessThan(100);
    // Region radii are 140/1000 of each side (56 and 112 px), not 140/1000 of the short side in both directions.
    expect(toleranceRadii(400, 800)).toEqual({ rx: 56, ry: 112 });
    for (const [x, y] of [[200 + 56 - 3, 400], [200 - 56 + 3, 400], [200, 400 + 112 - 3], [200, 400 - 112 + 3]] as const) {
      expect(isGreenTint(await pixel(written[0]!, x, y)), `inside at ${x},${y}`).toBe(true);
    }
    for (const [x, y] of [[200 + 56 + 3, 400], [200 - 56 - 3, 400], [200, 400 + 112 + 3], [200, 400 - 112 - 3]] as const) {
      expect(isGrey(await pixel(written[0]!, x, y)), `outside at ${x},${y}`).toBe(true);
    }

    // Record 1 on 600x300: GT px (300, 150), a miss, so the region is red; rx = 84, ry = 42.
    expect(isRedTint(await pixel(written[1]!, 300 + 84 - 3, 150))).toBe(true);
    expect(isGrey(await pixel(written[1]!, 300 + 84 + 3, 150))).toBe(true);
    expect(isRedTint(await pixel(written[1]!, 300, 150 - 42 + 3))).toBe(true);
    expect(isGrey(await pixel(written[1]!, 300, 150 - 42 - 3))).toBe(true);
  });

  it('notes a missing prediction in the caption and escapes caption text', () => {
    const svg = predictionSvg(400, 800, { gt: { x: 500, y: 500 }, pred: null, hit: false, caption: ['a <b> & c', 'no prediction: the output could not be parsed'] });
    expect(svg).toContain('a &lt;b&gt; &amp; c');
    expect(svg).toContain('could not be parsed');
    expect(svg).not.toContain('>pred<');
    expect(svg).toContain('>GT<');
  });

  it('draws records passed directly, indexed by their position', async () => {
    const out = join(root, 'direct');
    const samples = new Map([['synth/1/b', sample('synth/1/b', '1', 'images/b.png', 600, 300)]]);
    const records = [rec('synth/1/b', 0, 0), rec('synth/1/b', 30, 40)];
    const written = await visualizeRecords(records, samples, data, out, { indices: [1] });
    expect(written).toEqual([join(out, 'user_1', '1_synth_1_b.png')]);
    expect(sanitizeId('fingertip20k/1/20250309_133115/0003')).toBe('fingertip20k_1_20250309_133115_0003');
  });
});

describe('report', () => {
  it('writes an HTML page with recomputed figures, flags and PNG charts', async () => {
    const out = join(root, 'site', 'index.html');
    const written = await writeReport(results, out);
    expect(written.pngs).toEqual(['accuracy', 'l2-cdf', 'gain'].map((name) => join(root, 'site', `index-${name}.png`)));
    const html = await readFile(out, 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link|src=/i);

    const cells = (...values: string[]) => values.map((v) => `<td>${v}</td>`).join('');
    // Overall: vanilla user means acc (1/3 + 1/2)/2, mean L2 (150 + 90)/2, median (150 + 70)/2;
    // pooled over 7 samples: 3 hits, L2s 100 200 50 150 70 -> mean 114, median 100.
    expect(html).toContain(`<td class="name">vanilla</td><td>single</td>${cells('2', '7', '2', '41.67%', '120.00', '110.00', '42.86%', '114.00', '100.00')}`);
    expect(html).toContain(`<td class="name">global</td><td>single</td>${cells('2', '5', '0', '75.00%', '78.75', '78.75', '80.00%', '67.00', '30.00')}`);
    expect(html).toContain(`<td class="name">personalized</td><td>k-fold</td>${cells('1', '5', '0', '58.33%', '123.33', '90.00', '60.00%', '128.00', '80.00')}`);
    // Per user, vanilla | global | personalized.
    expect(html).toContain(
      `<td class="name">1</td>${cells('33.33%', '150.00', '150.00', '3', '100.00%', '20.00', '20.00', '3', '58.33% ± 8.33', '123.33 ± 23.33', '90.00 ± 10.00', '5')}`,
    );
    expect(html).toContain(`<td class="name">2</td>${cells('50.00%', '90.00', '70.00', '4', '50.00%', '137.50', '137.50', '2', '–', '–', '–', '–')}`);
    // Per fold.
    expect(html).toContain(`<td class="name">1</td>${cells('0', '2', '0', '50.00%', '100.00', '100.00')}`);
    expect(html).toContain(`<td class="name">1</td>${cells('1', '3', '0', '66.67%', '146.67', '80.00')}`);
    // Only the wrong fields are flagged; the rounded run summary and the other summaries agree.
    expect(html).toContain('2 disagreements');
    expect(html).toContain(`<td class="path">${join(results, 'personalized', 'user_1_summary.json')}</td><td>avg_accuracy</td><td>0.7</td>`);
    expect(written.report.flags.map((f) => [f.file.slice(results.length + 1), f.field, f.summary])).toEqual([
      ['personalized/user_1_summary.json', 'avg_accuracy', '0.7'],
      ['personalized/summary.json', 'users[1].folds[1].median_l2', '81'],
    ]);
    expect(written.report.checked).toBe(5);
    // Model output is escaped, never live markup.
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');

    for (const png of written.pngs) {
      const meta = await sharp(png).metadata();
      expect(meta.format).toBe('png');
      expect(meta.width).toBeGreaterThanOrEqual(600);
      expect(meta.height).toBeGreaterThanOrEqual(300);
      const stats = await sharp(png).stats();
      expect(stats.isOpaque).toBe(true);
    }
  });

  it('charts global vs personalized per user with the gain, from out.json', async () => {
    const out = join(root, 'gain', 'report.html');
    const written = await writeReport(results, out);
    const html = await readFile(out, 'utf8');
    // Expected figures straight from the fixture's records: a user's accuracy is its hit share (k-fold: the mean of the folds').
    const acc = (records: ResultRecord[]) => records.filter((r) => r.hit).length / records.length;
    const meanL2 = (records: ResultRecord[]) => records.reduce((a, r) => a + (r.l2 ?? 0), 0) / records.length;
    const global1 = acc(RESULTS['global/user_1']!);
    const personal1 = (acc(RESULTS['personalized/user_1/fold_0']!) + acc(RESULTS['personalized/user_1/fold_1']!)) / 2;
    const personalL2 = (meanL2(RESULTS['personalized/user_1/fold_0']!) + meanL2(RESULTS['personalized/user_1/fold_1']!)) / 2;
    expect(global1).toBe(1);
    expect(personal1).toBeCloseTo(7 / 12, 12);

    const gains = personalGains(written.report)!;
    expect([gains.baseline, gains.personalized]).toEqual(['global', 'personalized']);
    // Only user 1 has both; user 2 has no personalized run.
    expect(gains.users.map((u) => u.user)).toEqual(['1']);
    const u1 = gains.users[0]!;
    expect(u1.global).toBeCloseTo(global1, 12);
    expect(u1.personalized).toBeCloseTo(personal1, 12);
    expect(u1.gain).toBeCloseTo(personal1 - global1, 12);
    expect(u1.globalMeanL2).toBeCloseTo(meanL2(RESULTS['global/user_1']!), 12);
    expect(u1.personalizedMeanL2).toBeCloseTo(personalL2, 12);
    expect(gains.mean).toMatchObject({ user: 'mean', global: u1.global, personalized: u1.personalized, gain: u1.gain });

    // The chart's bars and labels carry the same numbers, and the label reads the gain in points.
    const chart = html.slice(html.indexOf('<h2>Personalization gain per user</h2>'));
    const data = [...chart.matchAll(/data-user="([^"]*)" data-series="([^"]*)" data-value="([^"]*)"/g)].map((m) => [m[1], m[2], Number(m[3])]);
    const expected = [
      ['1', 'global', global1], ['1', 'personalized', personal1], ['1', 'gain', personal1 - global1],
      ['mean', 'global', global1], ['mean', 'personalized', personal1], ['mean', 'gain', personal1 - global1],
    ] as const;
    expect(data.map(([user, series]) => [user, series])).toEqual(expected.map(([user, series]) => [user, series]));
    data.forEach(([, , value], i) => expect(value).toBeCloseTo(expected[i]![2], 12));
    expect(fmtGain(personal1 - global1)).toBe('−41.7 pts');
    expect(chart).toContain('>−41.7 pts</text>');
    expect(chart).toContain('better for 0 of 1 user');
    const cells = (...values: string[]) => values.map((v) => `<td>${v}</td>`).join('');
    expect(chart).toContain(`<td class="name">1</td>${cells('100.00%', '58.33%')}<td class="down">−41.7 pts</td>${cells('20.00', '123.33')}`);

    const png = await sharp(written.pngs[2]!).metadata();
    expect([png.format, png.width, png.height]).toEqual(['png', 640, 360]);
    // The bars are drawn: the global bar of user 1 (100%) is filled in the middle of the plot.
    expect(gainChartSvg(gains)).toContain('data-user="1" data-series="global" data-value="1"');
  });

  it('flags records whose l2 or hit do not follow from gt and pred', async () => {
    const dir = join(root, 'bad-results');
    await mkdir(join(dir, 'x', 'user_1'), { recursive: true });
    await writeFile(join(dir, 'x', 'user_1', 'out.json'), JSON.stringify([{ ...rec('s', 30, 40), l2: 20 }]));
    const { report } = await writeReport(dir);
    expect(report.flags).toHaveLength(1);
    expect(report.flags[0]!.summary).toBe('1 inconsistent record, first #0');
    // One one-shot experiment: nothing to compare, so no gain chart.
    expect(personalGains(report)).toBeNull();
    expect(await readFile(join(dir, 'report.html'), 'utf8')).toContain('No per-user comparison');
  });
});

/** Runs one command in-process, as `pigg ...` would, and returns what it wrote to stderr and the exit code. */
async function cli(...args: string[]): Promise<{ stderr: string; code: number }> {
  const program = new Command().exitOverride();
  registerVisualize(program);
  registerReport(program);
  let stderr = '';
  const spyErr = vi.spyOn(process.stderr, 'write').mockImplementation((text) => ((stderr += String(text)), true));
  const spyOut = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    await program.parseAsync(['node', 'pigg', ...args]);
    return { stderr, code: Number(process.exitCode ?? 0) };
  } finally {
    spyErr.mockRestore();
    spyOut.mockRestore();
    process.exitCode = undefined;
  }
}

describe('CLI bad input', () => {
  const vis = (...args: string[]) => cli('visualize', '--results', results, '--data', data, ...args);

  it('names the problem in one line', async () => {
    await mkdir(join(results, 'vanilla', 'user_3'), { recursive: true });
    const cases: Array<[string[], string]> = [
      [['--user', '1', '--all'], `pigg: ${results} holds several experiments (vanilla, global, personalized); pick one with --experiment\n`],
      [['--experiment', 'vanilla', '--user', '9', '--all'], `pigg: ${join(results, 'vanilla')}: no results for user 9 (users: 1, 2)\n`],
      [['--experiment', 'vanilla', '--user', '3', '--all'], `pigg: ${join(results, 'vanilla', 'user_3', 'out.json')}: no such file\n`],
      [['--experiment', 'vanilla', '--user', '1', '--samples', '0', '7'], `pigg: ${join(results, 'vanilla', 'user_1', 'out.json')}: sample index 7 is out of range (it has 3 records, 0-2)\n`],
      [['--experiment', 'vanilla', '--user', '2', '--samples', '1'], `pigg: ${join(data, 'images', '2b.png')}: image file is missing (sample 'synth/2/b')\n`],
      [['--experiment', 'personalized', '--user', '1', '--all'], `pigg: ${join(results, 'personalized')} holds k-fold results; pick one with --fold (user 1 has folds 0, 1)\n`],
      [['--experiment', 'personalized', '--user', '1', '--fold', '2', '--all'], `pigg: ${join(results, 'personalized', 'user_1', 'fold_2', 'out.json')}: no such file (user 1 has folds 0, 1)\n`],
      [['--experiment', 'nope', '--user', '1', '--all'], `pigg: ${join(results, 'nope')}: no results (expected user_<id>/out.json or user_<id>/fold_<k>/out.json)\n`],
      [['--experiment', 'vanilla', '--user', '1'], 'pigg: give exactly one of --samples <index...> or --all\n'],
    ];
    for (const [args, message] of cases) {
      const { stderr, code } = await vis(...args);
      expect(stderr, args.join(' ')).toBe(message);
      expect(code).toBe(1);
    }
    const empty = join(root, 'empty');
    await mkdir(empty);
    const { stderr } = await cli('report', empty);
    expect(stderr).toBe(`pigg: ${empty}: no results found (expected <experiment>/user_<id>/out.json or <experiment>/user_<id>/fold_<k>/out.json)\n`);
  });

  it('draws a personalized fold into the default folder', async () => {
    const { stderr, code } = await vis('--experiment', 'personalized', '--user', '1', '--fold', '1', '--samples', '1');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const meta = await sharp(join(results, 'visualizations', 'personalized', 'fold_1', 'user_1', '1_synth_1_a.png')).metadata();
    expect([meta.width, meta.height]).toEqual([400, 800]);
  });
});
