#!/usr/bin/env node
// Renders bench/results/*.json as the README's benchmark table (between the bench markers), so the README
// never holds a figure that no results file backs. `node bench/table.mjs` rewrites README.md in place.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const resultsDir = join(root, 'bench', 'results');
const lines = [];
for (const file of readdirSync(resultsDir).filter((f) => f.endsWith('.json')).sort()) {
  const result = JSON.parse(readFileSync(join(resultsDir, file), 'utf8'));
  if (!Array.isArray(result.rows)) continue; // a series (bench/feedback.mjs's accuracy over time), not a table
  const versions = Object.entries(result.versions).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(', ');
  lines.push(`**${file}**: ${result.device}; ${versions}; ${result.date.slice(0, 10)}; \`${result.command ?? `node bench/${file.split('-')[0]}.mjs`}\``, '');
  lines.push('| bench | config | metric | pigg | transformers | ratio (> 1: pigg better) |', '|---|---|---|---|---|---|');
  for (const row of result.rows) {
    const value = (v) => (v === null || v === undefined ? '—' : `${v} ${row.unit}`);
    lines.push(`| ${row.bench} | ${row.config} | ${row.metric} | ${value(row.pigg)} | ${value(row.transformers)} | ${row.ratio ?? '—'} |`);
  }
  lines.push('');
}
const readme = join(root, 'README.md');
const text = readFileSync(readme, 'utf8');
const start = '<!-- bench:start -->';
const end = '<!-- bench:end -->';
if (!text.includes(start) || !text.includes(end)) throw new Error(`${readme} has no ${start} ... ${end} block`);
writeFileSync(readme, `${text.slice(0, text.indexOf(start) + start.length)}\n${lines.join('\n')}\n${text.slice(text.indexOf(end))}`);
console.log(`README.md: ${lines.filter((l) => l.startsWith('| ') && !l.startsWith('| bench')).length} benchmark rows`);
