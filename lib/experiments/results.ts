// Result files, in PIGG's layout and field names: out.json (one record per sample), results.txt and summary
// JSONs. Every write is atomic (temp file + rename).
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import type { UserSummary } from '../data/metrics.js';
import { summarize, type EvalRecord, type ResultSummary } from '../data/records.js';

function formatNumber(value: number | null, digits = 2): string {
  return value === null ? 'n/a' : value.toFixed(digits);
}

export function resultsText(title: string, summary: ResultSummary): string {
  return [
    title,
    `accuracy: ${formatNumber(summary.accuracy === null ? null : summary.accuracy * 100)}% (L2 <= 140 on the 0-1000 grid)`,
    `mean_l2: ${formatNumber(summary.mean_l2)}`,
    `median_l2: ${formatNumber(summary.median_l2)}`,
    `n: ${summary.n}`,
    `parse_failures: ${summary.parse_failures}`,
    '',
  ].join('\n');
}

export async function writeJson(file: string, value: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Writes out.json, then results.txt and summary.json beside it; out.json last-but-one so a finished dir is whole. */
export async function writeEvalDir(dir: string, title: string, records: readonly EvalRecord[]): Promise<ResultSummary> {
  const summary = summarize(records);
  await writeJson(join(dir, 'out.json'), records);
  await writeFileAtomic(join(dir, 'results.txt'), resultsText(title, summary));
  await writeJson(join(dir, 'summary.json'), summary);
  return summary;
}

/** A finished evaluation dir's records, or null when it is not finished. */
export function readFinishedEval(dir: string): EvalRecord[] | null {
  const summaryFile = join(dir, 'summary.json');
  if (!existsSync(summaryFile)) return null;
  return JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as EvalRecord[];
}

export interface ExperimentSummary {
  experiment: string;
  users: Array<{ user: string } & (ResultSummary | UserSummary)>;
  overall: Record<string, number | null>;
}
