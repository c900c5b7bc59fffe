// scripts/gpu-session.sh, the one-call GPU session: its time boxes, and (PIGG_GPU_REHEARSAL=1, a step of its own in
// .ci/run) its CPU rehearsal: pack, the device's tree in a scratch folder, unpack, build, every stage.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const script = join(root, 'scripts', 'gpu-session.sh');

interface Stage { name: string; status: string; seconds: number; box: number }
interface Row { bench: string; config: string; metric: string; pigg: number | null; transformers: number | null }

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

describe('time boxes', () => {
  const out = mkdtempSync(join(tmpdir(), 'pigg-gpu-box-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));
  // One stage through the script's own stage function, on a budget of 100 s.
  const stage = (...args: string[]) => spawnSync('bash', [script, '_call', 'stage', ...args], {
    env: { ...process.env, OUT: out, GPU_SESSION_BUDGET: '100', GPU_SESSION_MIN_BOX: '1' }, encoding: 'utf8' });

  it('stop a stage past its box with everything it started, and say so in summary.json', () => {
    const pidFile = join(out, 'grandchild.pid');
    const result = stage('slow', '2', 'bash', '-c', `sleep 300 & echo $! > ${pidFile}; wait`);
    expect(result.status).toBe(124);
    expect(result.stdout).toMatch(/== slow: timeout after \d+ s/);
    expect(readJson(join(out, 'summary.json')).stages).toEqual([{ name: 'slow', status: 'timeout', seconds: expect.any(Number), box: 2 }]);
    // The stage's process group went with it: the grandchild (a server, a transformers child) holds no device.
    // (Gone, or a zombie where PID 1 of a container does not reap.)
    const pid = readFileSync(pidFile, 'utf8').trim();
    const running = () => {
      try {
        return !/^\S+ \(sleep\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    for (let k = 0; k < 20 && running(); k++) spawnSync('sleep', ['0.1']);
    expect(running()).toBe(false);
  });

  it('record a failing stage with its exit status, and skip one the budget has no room for', () => {
    expect(stage('fails', '10', 'bash', '-c', 'exit 3').status).toBe(3);
    expect(readJson(join(out, 'summary.json')).stages[0]).toMatchObject({ name: 'fails', status: 'failed (3)', box: 10 });
    const skipped = spawnSync('bash', [script, '_call', 'stage', 'late', '60', 'touch', join(out, 'ran')], {
      env: { ...process.env, OUT: out, GPU_SESSION_BUDGET: '10', GPU_SESSION_MIN_BOX: '15' }, encoding: 'utf8' });
    expect(skipped.status).toBe(0);
    expect(skipped.stdout).toMatch(/== late: skipped \(\d+ s of the budget left\)/);
    expect(existsSync(join(out, 'ran'))).toBe(false);
    expect(readJson(join(out, 'summary.json')).stages[0]).toEqual({ name: 'late', status: 'skipped', seconds: 0, box: 0 });
  });
});

describe.skipIf(!process.env.PIGG_GPU_REHEARSAL)('the CPU rehearsal (PIGG_GPU_REHEARSAL=1)', () => {
  it('packs within the call limit and runs every stage of the GPU session on the CPU', () => {
    const scratch = mkdtempSync(join(tmpdir(), 'pigg-gpu-rehearsal-'));
    try {
      const result = spawnSync('bash', [script, '--rehearse'], { cwd: root, env: { ...process.env, GPU_SESSION_SCRATCH: scratch }, encoding: 'utf8' });
      writeFileSync(join(scratch, 'rehearsal.log'), `${result.stdout}\n${result.stderr}`);
      expect(result.status, `${result.stdout.slice(-3000)}\n${result.stderr.slice(-3000)}`).toBe(0);
      const size = /the call sends ([\d.]+) MiB of 64 MiB \(tree ([\d.]+) MiB \+ carry \S+ ([\d.]+) MiB\)/.exec(result.stdout);
      expect(size, 'the pack prints the size of the call').not.toBeNull();
      const [total, tree, carry] = size!.slice(1).map(Number);
      expect(total).toBeLessThan(64);
      expect(Math.abs(tree + carry - total)).toBeLessThanOrEqual(0.11);

      const out = join(scratch, 'out');
      const summary = readJson(join(out, 'summary.json'));
      expect(summary).toMatchObject({ mode: 'rehearse', config: 'tiny,tiny', device: 'cpu' });
      expect(summary.stages.map((s: Stage) => [s.name, s.status])).toEqual([
        ['unpack', 'ok'], ['build', 'ok'], ['engine', 'ok'], ['fixtures', 'ok'], ['gpu-tiny-as-2b-train', 'ok'],
        ['gpu-tiny-as-2b-generate', 'ok'], ['serve-tiny-as-2b', 'ok'], ['gpu-tiny-as-8b-train', 'ok']]);
      expect(readdirSync(out).sort()).toEqual(['fixtures.txt', 'rehearsal-tiny-as-2b-generate.json', 'rehearsal-tiny-as-2b-train.json',
        'rehearsal-tiny-as-8b-train.json', 'serve-rehearsal-tiny-as-2b.json', 'session.log', 'summary.json']);

      // The engine was the addon the session built: the fixture checks ran through it, every tensor within tolerance.
      const fixtures = readFileSync(join(out, 'fixtures.txt'), 'utf8').trim().split('\n');
      expect(fixtures.map((l) => l.split(':')[0])).toEqual(['fp32', 'bf16', 'fp32 --gradient-checkpointing', 'bf16 --gradient-checkpointing']
        .map((v) => `a_single_image --dtype ${v}`));
      for (const line of fixtures) expect(line).toMatch(/: (\d+) passed, 0 failed$/);

      const hf = process.env.GPU_SESSION_REHEARSE_HF === '1' && Boolean(process.env.PIGG_HF_PYTHON);
      const train = (file: string, variants: string[]) => {
        const rows: Row[] = readJson(join(out, file)).rows;
        expect([...new Set(rows.map((r) => /update mode (\w+)|(LoRA)/.exec(r.config)!.slice(1).find(Boolean)))]).toEqual(variants);
        for (const row of rows.filter((r) => !r.metric.startsWith('MFU'))) expect(Number.isFinite(row.pigg), `${row.metric}: ${row.pigg}`).toBe(true);
        // transformers runs beside pigg where it has a twin (pure bf16 AdamW and LoRA): in a rehearsal only with
        // GPU_SESSION_REHEARSE_HF=1 and PIGG_HF_PYTHON.
        const twins = rows.filter((r) => r.metric.startsWith('time per optimizer step') && /pure|LoRA/.test(r.config));
        for (const row of twins) expect(row.transformers !== null, row.config).toBe(hf);
      };
      train('rehearsal-tiny-as-2b-train.json', ['master', 'stochastic', 'pure', 'LoRA']);
      train('rehearsal-tiny-as-8b-train.json', ['pure', 'LoRA']);
      const generate: Row[] = readJson(join(out, 'rehearsal-tiny-as-2b-generate.json')).rows;
      expect(generate.map((r) => r.bench)).toEqual(['click', 'click', 'click', 'click', 'eval', 'eval', 'eval']);
      // The decode rate of the static KV cache (pigg's own decode timing), batch 1 and the eval batch.
      expect(generate.filter((r) => r.metric.startsWith('decode tokens per second')).map((r) => r.bench)).toEqual(['click', 'eval']);
      for (const row of generate) expect(Number.isFinite(row.pigg), row.metric).toBe(true);
      const serve: Row[] = readJson(join(out, 'serve-rehearsal-tiny-as-2b.json')).rows;
      // Every phase answered: 1 and 4 adapters at concurrency 1 and 4, then one request at a time (max batch 1).
      expect(serve.filter((r) => r.metric === 'requests per second').map((r) => /max batch (\d+), (\d+) adapters?, concurrency (\d+)/.exec(r.config)!.slice(1).join(' ')))
        .toEqual(['8 1 1', '8 4 1', '8 1 4', '8 4 4', '1 1 4']);
      for (const row of serve.filter((r) => /requests per second|throughput/.test(r.metric))) expect(row.pigg).toBeGreaterThan(0);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 30 * 60_000);
});
