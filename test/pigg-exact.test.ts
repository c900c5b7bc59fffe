// PIGG-exact evaluation: PIGG's parse_inference against CPython's outputs on a corpus of answer texts (where pigg's
// robust parser reads many of them differently), PIGG's per-user metric on fixed answers, and `pigg eval` with its
// PIGG-exact defaults on a tiny random model: the records and results are PIGG's parse and metric of the outputs,
// sampled decoding reproduces itself. test/fixtures/pigg-parse comes from scripts/pigg-parse-fixture.py; with
// PIGG_HF_PYTHON set, that script also scores the eval run's outputs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAnswer, parsePiggInference, readAnswer } from '../lib/data/parse.js';
import { readDataset } from '../lib/data/manifest.js';
import { writeSynthDataset } from '../lib/data/synth/index.js';
import type { Sample } from '../lib/data/types.js';
import { initRandomModel } from '../lib/engine/configs.js';
import { PIGG_EXACT } from '../lib/processor/inputs.js';
import { scoreRecord, summarize, type EvalRecord } from '../lib/data/records.js';
import { runEval } from '../lib/experiments/runs.js';
import { Grounder, type GroundResult } from '../lib/grounding/grounder.js';
import { parseChatRequest } from '../lib/serve/requests.js';

interface Case {
  text: string;
  is_gt: boolean;
  content: string;
  x: number;
  y: number;
}
interface UserMetric {
  answers: string[];
  gt: Array<[number, number]>;
  pred: Array<[number, number]>;
  click_accuracy: number;
  mean_l2_error: number;
  median_l2_error: number;
}
const FIXTURE = fileURLToPath(new URL('./fixtures/pigg-parse/expected.json', import.meta.url));
const SCRIPT = resolve(import.meta.dirname, '..', 'scripts', 'pigg-parse-fixture.py');
const expected = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { cases: Case[]; metric: Record<string, UserMetric> };

describe("PIGG's parse_inference", () => {
  it.each(expected.cases.map((c, i) => [i, c] as const))('case %i equals CPython', (_, c) => {
    expect(parsePiggInference(c.text, c.is_gt)).toEqual({ content: c.content, x: c.x, y: c.y });
  });

  it("parts from pigg's robust parser where the issue says (range, signs, decimals, boxes, other formats, digits)", () => {
    const gt = expected.cases.filter((c) => c.is_gt);
    const differ = gt.filter((c) => {
      const robust = parseAnswer(c.text);
      return robust.x !== c.x || robust.y !== c.y;
    });
    expect(gt.length).toBeGreaterThanOrEqual(45);
    expect(differ.length).toBeGreaterThanOrEqual(20);
    const grounding = (body: string) => `\`\`\`grounding\n${body}\n\`\`\``;
    // [40, 4085]: PIGG keeps 4085, the robust parser clamps to 1000.
    expect(readAnswer(`\`\`\`referring\nSettings\n\`\`\`\n${grounding('[40, 4085]')}`, 'pigg')).toMatchObject({ x: 40, y: 4085, ok: true, referring: 'Settings' });
    expect(readAnswer(grounding('[40, 4085]'), 'robust')).toMatchObject({ x: 40, y: 1000 });
    expect(readAnswer(grounding('[-12, 340]'), 'pigg')).toMatchObject({ x: 12, y: 340 });
    expect(readAnswer(grounding('[311.7, 541.2]'), 'pigg')).toMatchObject({ x: 7, y: 541 });
    expect(readAnswer(grounding('(100, 200, 300, 400)'), 'pigg')).toMatchObject({ x: 100, y: 200 });
    expect(readAnswer(grounding('(100, 200, 300, 400)'), 'robust')).toMatchObject({ x: 200, y: 300 });
    expect(readAnswer('(455, 128)', 'pigg')).toEqual({ x: 0, y: 0, referring: null, ok: false, format: 'none' });
    expect(readAnswer('(455, 128)', 'robust')).toMatchObject({ x: 455, y: 128, ok: true });
  });

  it('readAnswer(text, "pigg") parses a generated text as PIGG parses the whole decoded sequence', () => {
    const outputs = expected.cases.filter((c) => !c.is_gt && c.text.startsWith('system\n'));
    expect(outputs).toHaveLength(5);
    for (const c of outputs) {
      const answer = c.text.slice(c.text.indexOf('\nassistant\n') + '\nassistant\n'.length);
      expect(readAnswer(answer, 'pigg')).toMatchObject({ x: c.x, y: c.y });
    }
  });
});

/** A dataset sample whose grid target is `gt` (a 1000x1000 screen, so pixels are grid units). */
function sampleAt(gt: [number, number], i: number): Sample {
  return { id: `s${i}`, user: 'u', image: 'none.png', width: 1000, height: 1000, instruction: 'tap', target: { x: gt[0], y: gt[1] }, referring: null } as Sample;
}

function result(text: string): GroundResult {
  const answer = readAnswer(text, 'pigg');
  return { x: answer.x, y: answer.y, grid: { x: answer.x, y: answer.y }, referring: answer.referring, text, tokens: 1, promptTokens: 1, finishReason: 'stop', seconds: 0, adapter: null, parsed: answer.ok };
}

describe("PIGG's per-user metric (results.txt)", () => {
  it.each(Object.entries(expected.metric))('user %s: accuracy, mean and median L2 equal evaluate_coordinates', (_, user) => {
    const records = user.answers.map((text, i) => scoreRecord(sampleAt(user.gt[i]!, i), result(text)));
    expect(records.map((r) => r.pred ?? [0, 0])).toEqual(user.pred);
    const summary = summarize(records);
    expect(summary.accuracy).toBe(user.click_accuracy);
    expect(summary.mean_l2).toBe(user.mean_l2_error);
    expect(summary.median_l2).toBe(user.median_l2_error);
  });
});

describe('pigg eval in its PIGG-exact mode (tiny random model)', () => {
  const work = mkdtempSync(join(tmpdir(), 'pigg-exact-'));
  const data = join(work, 'data');
  const model = join(work, 'tiny');
  // Small screenshots keep the run short; the parser and the decoding are PIGG's. A grammar makes every answer a
  // PIGG answer, so the metric is not all (0, 0) misses; the points are sampled.
  const settings = { ...PIGG_EXACT, image: { ...PIGG_EXACT.image, maxPixels: 100352 } };
  const common = { data, settings, model, users: ['1', '2'], load: { device: 'cpu', dtype: 'fp32' as const }, maxNewTokens: 64, batchSize: 4, constrain: 'pigg' as const, imageWorkers: 0 };
  let samples: Sample[];

  beforeAll(async () => {
    await writeSynthDataset(data, { users: 2, personal: 2, samplesPerUser: 6, seed: 4, small: true });
    await initRandomModel('tiny', model, { seed: 2 }); // its generation_config.json samples (Qwen3-VL Instruct's)
    samples = (await readDataset(data)).samples;
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("records and per-user results are PIGG's parse and metric of the outputs; a seeded rerun gives the same, greedy differs", async () => {
    const out = join(work, 'results');
    const run = await runEval({ ...common, out, name: 'sampled' });
    const greedy = await runEval({ ...common, out, name: 'greedy', settings: { ...settings, decoding: 'greedy' } });
    const again = await runEval({ ...common, out, name: 'again', settings: { ...settings, seed: 0 } });
    const scoring: Record<string, { outputs: string[]; gt: Array<[number, number]> }> = {};
    for (const user of ['1', '2']) {
      const records = JSON.parse(readFileSync(join(out, 'sampled', `user_${user}`, 'out.json'), 'utf8')) as EvalRecord[];
      expect(records).toHaveLength(samples.filter((s) => s.user === user).length);
      for (const record of records) {
        const pigg = parsePiggInference(`assistant\n${record.output}`, false);
        expect(record.pred ?? [0, 0]).toEqual([pigg.x, pigg.y]);
      }
      expect(run.users[user]).toEqual(summarize(records));
      expect(readFileSync(join(out, 'again', `user_${user}`, 'out.json'), 'utf8')).toBe(readFileSync(join(out, 'sampled', `user_${user}`, 'out.json'), 'utf8'));
      scoring[user] = { outputs: records.map((r) => r.output), gt: records.map((r) => r.gt) };
    }
    expect(again.overall).toEqual(run.overall);
    expect(run.overall.parse_failures).toBe(0); // the grammar's answers all parse: the metric is not all (0, 0)
    const outputs = (name: string) => ['1', '2'].flatMap((u) => (JSON.parse(readFileSync(join(out, name, `user_${u}`, 'out.json'), 'utf8')) as EvalRecord[]).map((r) => r.output));
    expect(outputs('greedy')).not.toEqual(outputs('sampled'));
    expect(new Set(outputs('sampled')).size).toBeGreaterThan(6); // sampled points vary from sample to sample
    expect(greedy.overall.n).toBe(run.overall.n);

    const python = process.env.PIGG_HF_PYTHON;
    if (python) {
      const file = join(work, 'run.json');
      writeFileSync(file, JSON.stringify({ users: scoring }));
      const pigg = JSON.parse(execFileSync(python, [SCRIPT, '--score', file], { encoding: 'utf8' })) as Record<string, Omit<UserMetric, 'answers' | 'gt'>>;
      for (const user of ['1', '2']) {
        expect([run.users[user]!.accuracy, run.users[user]!.mean_l2, run.users[user]!.median_l2]).toEqual([pigg[user]!.click_accuracy, pigg[user]!.mean_l2_error, pigg[user]!.median_l2_error]);
      }
    }
  });

  it('the Grounder samples per request with a seed; groundSamples seeds sample i with seed + i, whatever the batch', async () => {
    const sampling = { temperature: 0.7, topP: 0.8, topK: 20, seed: 40 };
    const grounder = await Grounder.load(model, { dtype: 'fp32', constrain: 'pigg', parser: 'pigg', image: { maxPixels: 100352 }, maxNewTokens: 64, imageWorkers: 0 });
    try {
      const mine = samples.filter((s) => s.user === '1').slice(0, 4);
      const image = (s: Sample) => readFileSync(join(data, s.image));
      const batched = await grounder.groundSamples(mine, data, { batchSize: 3, sampling });
      for (const [i, s] of mine.entries()) {
        const alone = await grounder.ground(image(s), s.instruction, { sampling: { ...sampling, seed: sampling.seed + i } });
        expect(alone.text).toBe(batched[i]!.text);
      }
      const texts = batched.map((r) => r.text);
      expect(new Set(texts).size).toBeGreaterThan(1);
      const greedy = await grounder.groundSamples(mine, data, { batchSize: 3 });
      expect(greedy.map((r) => r.text)).not.toEqual(texts);
      expect((await grounder.ground(image(mine[0]!), mine[0]!.instruction, { sampling: null })).text).toBe(greedy[0]!.text);
      await expect(grounder.ground(image(mine[0]!), 'x', { sampling: { temperature: -1 } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      await grounder[Symbol.asyncDispose]();
    }
  });
});

describe("serve: OpenAI's temperature, top_p and seed", () => {
  const limits = { maxImageBytes: 1024, maxInstructionLength: 100, maxNewTokens: 64 };
  const body = (extra: object) => ({ model: 'base', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }, { type: 'text', text: 'Open settings' }] }], ...extra });
  const sampling = (extra: object) => parseChatRequest(body(extra), limits, 'base').sampling;

  it('neither temperature nor top_p: the server decodes as configured; temperature 0: greedy; otherwise sampling', () => {
    expect(sampling({})).toBeUndefined();
    expect(sampling({ seed: 3 })).toBeUndefined();
    expect(sampling({ temperature: 0, top_p: 0.5 })).toBeNull();
    expect(sampling({ temperature: 0.7, top_p: 0.8, seed: 5 })).toEqual({ temperature: 0.7, topP: 0.8, seed: 5 });
    expect(sampling({ top_p: 0.9, seed: 6 })).toEqual({ temperature: 1, topP: 0.9, seed: 6 });
    const unseeded = sampling({ temperature: 1 })!;
    expect(Number.isSafeInteger(unseeded.seed)).toBe(true);
  });

  it('rejects values out of range, naming the field', () => {
    expect(() => sampling({ temperature: 2.5 })).toThrow('temperature must be a number from 0 to 2, got 2.5');
    expect(() => sampling({ temperature: 1, top_p: 0 })).toThrow('top_p must be a number in (0, 1], got 0');
    expect(() => sampling({ temperature: 1, seed: -1 })).toThrow('seed must be a non-negative integer, got -1');
  });
});
