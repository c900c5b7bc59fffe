// The engine's call options cross N-API as typed objects: the binding reads each field into the engine's struct
// (native/options.h), rejects unknown keys and wrong types with one message naming them, and reports the structs'
// defaults (engineDefaults()). A call that leaves an option out behaves exactly as one that passes the reported
// default, and the TS layer keeps no copy of those defaults.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFixtureCase } from '../lib/engine/fixture.js';
import { engineDefaults, Qwen3VL, type NamedTensors } from '../lib/engine/model.js';
import { native } from '../lib/engine/native.js';
import type { TrainerOptions } from '../lib/engine/trainer.js';
import { tensorF32 } from '../lib/safetensors.js';

const PROJECT = resolve(import.meta.dirname, '..');
const ROOT = join(PROJECT, 'test', 'fixtures', 'qwen3vl-tiny');
const CASE_A = readFixtureCase(join(ROOT, 'cases', 'a_single_image'));

function pick(names: Record<string, string>): NamedTensors {
  const out: NamedTensors = {};
  for (const [as, name] of Object.entries(names)) {
    const tensor = CASE_A.inputs.get(name);
    if (tensor) out[as] = tensor;
  }
  return out;
}
const IMAGES = { pixel_values: 'pixel_values', image_grid_thw: 'image_grid_thw' };
const TRAIN_BATCH = pick({ input_ids: 'input_ids', attention_mask: 'attention_mask', labels: 'labels', ...IMAGES });
const PROMPT = pick({ input_ids: 'decode_input_ids', attention_mask: 'decode_attention_mask', ...IMAGES });

let model: Qwen3VL;
beforeAll(async () => {
  model = await Qwen3VL.load(CASE_A.modelDir);
});
afterAll(() => model?.dispose());

describe('unknown option keys and wrong types', () => {
  it('load: the unknown key is named with the allowed ones', async () => {
    await expect(Qwen3VL.load(CASE_A.modelDir, { devices: 'cpu' } as never)).rejects.toThrow(
      "unknown load option 'devices' (allowed: device, dtype, threads, allowTf32)");
  });

  it('generate: every unknown key in one message, the per-row lists among the allowed', async () => {
    await expect(model.generate(PROMPT, { maxNewTokens: 2, maxTokens: 2, greedy: true } as never)).rejects.toThrow(
      "unknown generate options 'maxTokens', 'greedy' (allowed: maxNewTokens, eosTokenIds, returnStepLogits, adapters, grammars, sampling, rowControls, onStep)");
  });

  it('trainer: top-level and nested keys are named with their path', async () => {
    await expect(model.createTrainer({ learningrate: 1e-3 } as never)).rejects.toThrow("unknown trainer option 'learningrate' (allowed: learningRate, beta1,");
    await expect(model.createTrainer({ lora: { rank: 4, dropuot: 0 } } as never)).rejects.toThrow(
      "unknown trainer option 'lora.dropuot' (allowed in 'lora': rank, alpha, dropout, targets, loraOnly, init, aside)");
    await expect(model.createTrainer({ trainable: { layers: 1 } } as never)).rejects.toThrow(
      "unknown trainer option 'trainable.layers' (allowed in 'trainable': vision, aligner, embeddings, lmHead, lastLayers)");
  });

  it('sampling rows: an unknown key is named', async () => {
    const logits = { logits: tensorF32([1, 4], new Float32Array([0, 1, 2, 3])) };
    await expect((async () => native().sampleTokens(logits, [{ temperature: 1, top_p: 0.5 } as never], 1))()).rejects.toThrow("unknown sampling option 'top_p'");
  });

  it('a wrong type names the field, what it must be and what it got', async () => {
    await expect(model.createTrainer({ learningRate: '1e-3' } as never)).rejects.toThrow("trainer option 'learningRate' must be a number, got string");
    await expect(model.createTrainer({ warmupSteps: 1.5 })).rejects.toThrow("trainer option 'warmupSteps' must be an integer, got number");
    await expect(model.createTrainer({ seed: -1 })).rejects.toThrow("trainer option 'seed' must be an integer >= 0, got number");
    await expect(model.createTrainer({ lora: { targets: 'q_proj' } } as never)).rejects.toThrow("trainer option 'lora.targets' must be an array, got string");
    await expect(model.createTrainer({ updateMode: 'fast' } as never)).rejects.toThrow("trainer option 'updateMode': unknown update mode 'fast'");
    await expect(model.generate(PROMPT, { maxNewTokens: 2, returnStepLogits: 1 } as never)).rejects.toThrow("generate option 'returnStepLogits' must be a boolean, got number");
    await expect((async () => native().load(CASE_A.modelDir, '{"dtype": "fp32"}' as never))()).rejects.toThrow('load options must be an object');
  });

  it('keys set to undefined or null count as absent', async () => {
    const trainer = await model.createTrainer({ lora: undefined, trainable: undefined, seed: null } as never);
    expect((await trainer.info()).parameters.some((name) => name.includes('lora_'))).toBe(false);
    trainer.dispose();
  });
});

describe('defaults reported by the engine', () => {
  const defaults = engineDefaults();

  it("are the engine's: PIGG's generation budget, LoRA with the base frozen, fp32 on the CPU", () => {
    expect(defaults.generate).toEqual({ maxNewTokens: 512, eosTokenIds: null, returnStepLogits: false });
    expect(defaults.load).toEqual({ device: 'cpu', dtype: 'fp32', threads: 0, allowTf32: false });
    expect(defaults.sampling).toEqual({ temperature: 0, topP: 1, topK: 0, repetitionPenalty: 1, seed: 0 });
    expect(defaults.trainer.lora).toMatchObject({ rank: 8, alpha: 32, dropout: 0.1, loraOnly: true, init: '', aside: false });
    expect(defaults.trainer).toMatchObject({ learningRate: 2e-5, gradientCheckpointing: true, updateMode: 'master', schedule: 'linear', seed: 42 });
  });

  // Two fresh models, trained from the same weights: the same losses, gradient norms and trainable parameters.
  async function threeSteps(options: TrainerOptions): Promise<unknown> {
    const fresh = await Qwen3VL.load(CASE_A.modelDir);
    try {
      const trainer = await fresh.createTrainer(options);
      const reports = [];
      for (let i = 0; i < 3; i++) {
        const { loss, gradNorm, learningRate, tokens } = await trainer.step(TRAIN_BATCH);
        reports.push({ loss, gradNorm, learningRate, tokens });
      }
      const { parameters, trainableParameters } = await trainer.info();
      return { reports, parameters, trainableParameters };
    } finally {
      fresh.dispose();
    }
  }

  it('trainer: leaving every option out equals passing every reported default', async () => {
    const { lora: _lora, ...trainer } = defaults.trainer; // `lora` present switches LoRA on
    const run = { totalSteps: 4 }; // the default 0 leaves the linear schedule at learning rate 0
    const implicit = await threeSteps(run);
    expect(await threeSteps({ ...trainer, ...run })).toEqual(implicit);
    const { reports } = implicit as { reports: Array<{ learningRate: number; loss: number }> };
    expect(reports[0]!.learningRate).toBeGreaterThan(0); // the weights moved: the later losses depend on the defaults too
    expect(reports[2]!.loss).not.toBe(reports[0]!.loss);
  });

  it('trainer LoRA: an empty lora object equals the reported LoRA defaults (dropout replayed from the seed)', async () => {
    const implicit = await threeSteps({ totalSteps: 4, lora: {} });
    expect(await threeSteps({ totalSteps: 4, lora: defaults.trainer.lora })).toEqual(implicit);
    const { parameters } = implicit as { parameters: string[] };
    expect(parameters.every((name) => name.includes('.lora_'))).toBe(true); // loraOnly: the base stays frozen
    expect(parameters.filter((name) => name.includes('.layers.0.')).length).toBe(2 * defaults.trainer.lora.targets.length);
  });

  it("generate: leaving options out equals the reported defaults, and eosTokenIds null means the model's", async () => {
    const info = await model.info();
    const implicit = await model.generate(PROMPT);
    const explicit = await model.generate(PROMPT, { maxNewTokens: defaults.generate.maxNewTokens, eosTokenIds: info.config.eosTokenIds, returnStepLogits: false });
    expect(explicit.tokens).toEqual(implicit.tokens);
    expect(implicit.tensors['generate.step_logits']).toBeUndefined();
    // Without stop ids the budget is the limit: the default budget is what a call without options runs to.
    const neverStops = await model.generate(PROMPT, { eosTokenIds: [] });
    expect(neverStops.tokens[0]!.length).toBe(defaults.generate.maxNewTokens);
  });

  it('sampling: a row with only a temperature draws as one with every reported default', async () => {
    const logits = { logits: tensorF32([2, 5], new Float32Array([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])) };
    const { temperature: _t, ...rest } = defaults.sampling;
    const implicit = await native().sampleTokens(logits, [{ temperature: 1 } as never, { temperature: 1 } as never], 64);
    const explicit = await native().sampleTokens(logits, [{ ...rest, temperature: 1 }, { ...rest, temperature: 1 }], 64);
    expect(Array.from(explicit.tokens!.data as BigInt64Array)).toEqual(Array.from(implicit.tokens!.data as BigInt64Array));
    expect(new Set(Array.from(implicit.tokens!.data as BigInt64Array)).size).toBeGreaterThan(1); // it did sample
  });
});

describe('no copy of the defaults in the TS layer', () => {
  function files(dir: string): string[] {
    return readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
    });
  }
  const leaves: Array<{ path: string; key: string; value: number | string | boolean }> = [];
  const walk = (object: object, path: string[]) => {
    for (const [key, value] of Object.entries(object)) {
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) walk(value, [...path, key]);
      else if (['number', 'string', 'boolean'].includes(typeof value)) leaves.push({ path: [...path, key].join('.'), key, value });
    }
  };
  walk(engineDefaults(), []);
  const LITERAL = String.raw`(-?[0-9][0-9_.eE+-]*|'[^']*'|"[^"]*"|true|false)(?!\s*\|)`; // not a type union ('fp32' | 'bf16')
  const equal = (text: string, value: unknown) =>
    /^['"]/.test(text) ? text.slice(1, -1) === value : text === 'true' || text === 'false' ? String(value) === text : Number(text.replace(/_/g, '')) === value;

  // `key = value`, `key: value`, `key ?? value`, or a CLI option `--kebab-key` whose commander default is the value.
  function copies(file: string, keep: (leaf: (typeof leaves)[number]) => boolean): string[] {
    const found: string[] = [];
    readFileSync(file, 'utf8').split('\n').forEach((line, index) => {
      for (const leaf of leaves.filter(keep)) {
        const kebab = leaf.key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
        const patterns = [new RegExp(String.raw`\b${leaf.key}\s*(?:=|:|\?\?)\s*${LITERAL}`, 'g'), new RegExp(String.raw`'--${kebab}\b[^']*'.*,\s*${LITERAL}\)`, 'g')];
        for (const pattern of patterns) {
          for (const match of line.matchAll(pattern)) {
            if (equal(match[1]!, leaf.value)) found.push(`${relative(PROJECT, file)}:${index + 1}: ${leaf.path} = ${JSON.stringify(leaf.value)}`);
          }
        }
      }
    });
    return found;
  }

  it("lib/engine and lib/training's option mapping set no engine default themselves", () => {
    const scanned = [...files(join(PROJECT, 'lib', 'engine')), join(PROJECT, 'lib', 'training', 'loop.ts')];
    expect(scanned.flatMap((file) => copies(file, () => true))).toEqual([]);
  });

  it("nowhere in lib/ is the generation budget or loraOnly's default written again", () => {
    const generation = (leaf: (typeof leaves)[number]) => leaf.path.startsWith('generate.') || leaf.path === 'trainer.lora.loraOnly';
    expect(files(join(PROJECT, 'lib')).flatMap((file) => copies(file, generation))).toEqual([]);
    const budget = String(engineDefaults().generate.maxNewTokens);
    const named = files(join(PROJECT, 'lib')).filter((file) => new RegExp(String.raw`MAX_NEW_TOKENS\s*=\s*${budget}\b`).test(readFileSync(file, 'utf8')));
    expect(named).toEqual([]);
  });

  it('the scan finds a copy where there is one', () => {
    // The patterns themselves: a budget written as a default, a commander default, and a default in a destructuring.
    const leaf = leaves.find((l) => l.path === 'generate.maxNewTokens')!;
    const line = (text: string) => new RegExp(String.raw`\b${leaf.key}\s*(?:=|:|\?\?)\s*${LITERAL}`).exec(text)?.[1];
    expect(line('const { maxNewTokens = 512 } = options;')).toBe('512');
    expect(line('maxNewTokens: options.maxNewTokens ?? 512')).toBe('512');
    expect(new RegExp(String.raw`'--max-new-tokens\b[^']*'.*,\s*${LITERAL}\)`).exec(".option('--max-new-tokens <n>', 'budget', integerOption('--max-new-tokens', 1), 512)")?.[1]).toBe('512');
  });
});
