// Bad input to the native engine: corrupt or mismatched checkpoint folders, bad forward/generate inputs and bad
// load options each give one precise Error (naming the file and the tensor or field), never an abort. Also
// `pigg inspect` on good and bad folders, and sharded checkpoints.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFixtureCase } from '../lib/engine/fixture.js';
import { engineVersions, inspectCheckpoint, Qwen3VL, type NamedTensors } from '../lib/engine/model.js';
import { readSafetensors, tensorI64, writeSafetensors, type HostTensor } from '../lib/safetensors.js';

const PROJECT = resolve(import.meta.dirname, '..');
const ROOT = join(PROJECT, 'test', 'fixtures', 'qwen3vl-tiny');
const UNTIED = join(ROOT, 'models', 'tiny-untied');
const TIED = join(ROOT, 'models', 'tiny-tied');
const CASE_A = join(ROOT, 'cases', 'a_single_image');
const CASE_B = join(ROOT, 'cases', 'b_batch2_rightpad');
const CASE_C = join(ROOT, 'cases', 'c_text_only');
const CLI = join(PROJECT, 'dist', 'cli', 'index.js');

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'pigg-err-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

// ---- raw safetensors surgery -------------------------------------------------------------------------------

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
type Header = Record<string, Entry | Record<string, string>>;

function parseFile(path: string): { header: Header; data: Buffer } {
  const file = readFileSync(path);
  const length = Number(file.readBigUInt64LE(0));
  return { header: JSON.parse(file.subarray(8, 8 + length).toString('utf8')), data: file.subarray(8 + length) };
}

function headerBytes(header: Header | string): Buffer {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  text += ' '.repeat((8 - (Buffer.byteLength(text) % 8)) % 8);
  return Buffer.from(text, 'utf8');
}

function assemble(header: Header | string | Buffer, data: Uint8Array): Buffer {
  const bytes = Buffer.isBuffer(header) ? header : headerBytes(header);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([prefix, bytes, data]);
}

const entry = (header: Header, name: string) => header[name] as Entry;

let folderCount = 0;
/**
 * A writable copy of a tiny model folder (config.json + model.safetensors) with `mutate` applied; returns
 * its path and the path of its weights file.
 */
function corrupt(source: string, mutate: (files: { dir: string; weights: string; config: string }) => void): { dir: string; weights: string; config: string } {
  const dir = join(tmp, `model-${++folderCount}`);
  mkdirSync(dir);
  const files = { dir, weights: join(dir, 'model.safetensors'), config: join(dir, 'config.json') };
  writeFileSync(files.config, readFileSync(join(source, 'config.json')));
  writeFileSync(files.weights, readFileSync(join(source, 'model.safetensors')));
  mutate(files);
  return files;
}

function editHeader(weights: string, edit: (header: Header, data: Buffer) => Header | string | Buffer | void): void {
  const { header, data } = parseFile(weights);
  const result = edit(header, data);
  writeFileSync(weights, assemble(result ?? header, data));
}

function editConfig(configPath: string, edit: (config: any) => void): void {
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  edit(config);
  writeFileSync(configPath, JSON.stringify(config, null, 2));
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** Load and inspect both fail with the same single-line message containing every `parts` entry. */
async function expectBadFolder(dir: string, parts: Array<string | RegExp>): Promise<string> {
  const fromInspect = await rejection(inspectCheckpoint(dir));
  const fromLoad = await rejection(Qwen3VL.load(dir));
  expect(fromLoad.message).toBe(fromInspect.message);
  const message = fromLoad.message;
  expect(message.includes('\n'), message).toBe(false);
  expect(message).not.toMatch(/Exception raised from|frame #/); // no libtorch backtrace
  for (const part of parts) {
    if (typeof part === 'string') expect(message).toContain(part);
    else expect(message).toMatch(part);
  }
  return message;
}

// The last tensor of the data section (the one a truncation cuts).
function lastTensor(header: Header): string {
  return Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .sort(([, a], [, b]) => (b as Entry).data_offsets[1] - (a as Entry).data_offsets[1])[0][0];
}

// ---- corrupt safetensors files -----------------------------------------------------------------------------

describe('corrupt model.safetensors', () => {
  const NORM_A = 'model.language_model.layers.0.input_layernorm.weight';
  const NORM_B = 'model.language_model.layers.0.post_attention_layernorm.weight';

  it('truncated data section: names the file and the first tensor past the end', async () => {
    const { dir, weights } = corrupt(UNTIED, ({ weights }) => writeFileSync(weights, readFileSync(weights).subarray(0, -100)));
    const last = lastTensor(parseFile(join(UNTIED, 'model.safetensors')).header);
    expect(last).toBe('model.visual.pos_embed.weight');
    const message = await expectBadFolder(dir, [`${weights}: `, `tensor '${last}'`, 'past the end of the data section', 'truncated']);
    expect(message).toMatch(/ends at data byte (\d+), past the end of the data section \((\d+) bytes/);
    const [, end, size] = message.match(/ends at data byte (\d+), past the end of the data section \((\d+) bytes/)!;
    expect(Number(end) - Number(size)).toBe(100);
  });

  it('file cut inside the header / shorter than 8 bytes', async () => {
    const cut = corrupt(UNTIED, ({ weights }) => writeFileSync(weights, readFileSync(weights).subarray(0, 1000)));
    await expectBadFolder(cut.dir, [`${cut.weights}: header length 12952 runs past the end of the file (1000 bytes; truncated?)`]);
    const tiny = corrupt(UNTIED, ({ weights }) => writeFileSync(weights, Buffer.from([1, 2, 3, 4])));
    await expectBadFolder(tiny.dir, [`${tiny.weights}: file is 4 bytes, shorter than the 8-byte header length`]);
    const empty = corrupt(UNTIED, ({ weights }) => writeFileSync(weights, Buffer.alloc(0)));
    await expectBadFolder(empty.dir, [`${empty.weights}: file is 0 bytes`]);
  });

  it('header length past the end of the file (also 2^64-1, no overflow)', async () => {
    const past = corrupt(UNTIED, ({ weights }) => {
      const file = readFileSync(weights);
      file.writeBigUInt64LE(BigInt(file.length - 7));
      writeFileSync(weights, file);
    });
    const size = readFileSync(past.weights).length;
    await expectBadFolder(past.dir, [`${past.weights}: header length ${size - 7} runs past the end of the file (${size} bytes`]);
    const huge = corrupt(UNTIED, ({ weights }) => {
      const file = readFileSync(weights);
      file.writeBigUInt64LE(2n ** 64n - 1n);
      writeFileSync(weights, file);
    });
    await expectBadFolder(huge.dir, [`${huge.weights}: header length 18446744073709551615 runs past the end of the file`]);
  });

  it('header that is not JSON, not UTF-8, or not an object', async () => {
    const garbage = corrupt(UNTIED, ({ weights }) => editHeader(weights, () => Buffer.alloc(12952, 'x')));
    await expectBadFolder(garbage.dir, [`${garbage.weights}: header is not valid UTF-8 JSON`]);
    const cutJson = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => JSON.stringify(header).slice(0, -40)));
    await expectBadFolder(cutJson.dir, [`${cutJson.weights}: header is not valid UTF-8 JSON`]);
    const badUtf8 = corrupt(UNTIED, ({ weights }) => {
      const file = readFileSync(weights);
      const at = file.indexOf('"generator"');
      expect(at).toBeGreaterThan(8);
      file[at + 2] = 0xff; // inside a JSON string: an invalid UTF-8 byte
      writeFileSync(weights, file);
    });
    await expectBadFolder(badUtf8.dir, [`${badUtf8.weights}: header is not valid UTF-8 JSON`, /UTF-8|utf-8/]);
    const array = corrupt(UNTIED, ({ weights }) => editHeader(weights, () => '[1, 2, 3]'));
    await expectBadFolder(array.dir, [`${array.weights}: header is not a JSON object`]);
    const entryNotObject = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      (header as any)[NORM_A] = 'F32';
    }));
    await expectBadFolder(entryNotObject.dir, [`${entryNotObject.weights}: tensor '${NORM_A}': header entry is not a JSON object`]);
  });

  it('overlapping data_offsets name both tensors', async () => {
    const { dir, weights } = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      expect(entry(header, NORM_A).shape).toEqual(entry(header, NORM_B).shape);
      entry(header, NORM_B).data_offsets = [...entry(header, NORM_A).data_offsets];
    }));
    await expectBadFolder(dir, [`${weights}: tensors '`, `'${NORM_A}'`, `'${NORM_B}'`, 'have overlapping data_offsets']);
    // Partial overlap: shift a tensor by 4 bytes into its neighbour.
    const partial = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      const e = entry(header, NORM_B);
      e.data_offsets = [e.data_offsets[0] + 4, e.data_offsets[1] + 4];
    }));
    await expectBadFolder(partial.dir, [`${partial.weights}: tensors '`, `'${NORM_B}'`, 'have overlapping data_offsets']);
  });

  it('out-of-range, reversed, negative and huge data_offsets', async () => {
    const range = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header, data) => {
      entry(header, NORM_A).data_offsets = [data.length, data.length + 256];
    }));
    const dataSize = parseFile(range.weights).data.length;
    await expectBadFolder(range.dir, [`${range.weights}: tensor '${NORM_A}' ends at data byte ${dataSize + 256}, past the end of the data section (${dataSize} bytes`]);
    const reversed = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      const [b, e] = entry(header, NORM_A).data_offsets;
      entry(header, NORM_A).data_offsets = [e, b];
    }));
    await expectBadFolder(reversed.dir, [`${reversed.weights}: tensor '${NORM_A}': data_offsets end`, 'is before begin']);
    const negative = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).data_offsets = [-256, 0];
    }));
    await expectBadFolder(negative.dir, [`${negative.weights}: tensor '${NORM_A}': data_offsets must be non-negative integers`]);
    const fractional = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).data_offsets = [0.5, 256.5];
    }));
    await expectBadFolder(fractional.dir, [`${fractional.weights}: tensor '${NORM_A}': data_offsets must be non-negative integers`]);
    // Offsets near 2^64: begin + size must not wrap around.
    const huge = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).data_offsets = [111111, 222222];
      return JSON.stringify(header).replace('[111111,222222]', '[18446744073709551104,18446744073709551360]');
    }));
    await expectBadFolder(huge.dir, [`${huge.weights}: tensor '${NORM_A}' ends at data byte 18446744073709551360, past the end of the data section`]);
    const pastUint64 = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).data_offsets = [111111, 222222];
      return JSON.stringify(header).replace('[111111,222222]', '[18446744073709551616,18446744073709551872]');
    }));
    await expectBadFolder(pastUint64.dir, [`${pastUint64.weights}: tensor '${NORM_A}': data_offsets must be non-negative integers`]);
  });

  it('unknown dtype, and a known dtype that is not a float weight', async () => {
    const unknown = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).dtype = 'F33';
    }));
    await expectBadFolder(unknown.dir, [`${unknown.weights}: tensor '${NORM_A}': unknown dtype 'F33'`]);
    const missing = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      delete (entry(header, NORM_A) as any).dtype;
    }));
    await expectBadFolder(missing.dir, [`${missing.weights}: tensor '${NORM_A}': missing or non-string dtype`]);
    const integer = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).dtype = 'I32'; // same 4 bytes per element, so only the weight check can object
    }));
    await expectBadFolder(integer.dir, [`${integer.weights}: tensor '${NORM_A}' has dtype I32; weights must be F32, BF16 or F16`]);
  });

  it('shape that does not match the byte size, and bad shape entries', async () => {
    const size = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).shape = [64, 2];
    }));
    await expectBadFolder(size.dir, [`${size.weights}: tensor '${NORM_A}': shape [64,2] x F32 needs 512 bytes but data_offsets span 256`]);
    const negative = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).shape = [-64];
    }));
    await expectBadFolder(negative.dir, [`${negative.weights}: tensor '${NORM_A}': shape entries must be non-negative integers`]);
    const overflow = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).shape = [4294967296, 4294967296];
    }));
    await expectBadFolder(overflow.dir, [`${overflow.weights}: tensor '${NORM_A}': shape is too large`]);
    // Same byte size, wrong shape for the config: the checkpoint check names the tensor and both shapes.
    const reshaped = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, NORM_A).shape = [8, 8];
    }));
    await expectBadFolder(reshaped.dir, [`${reshaped.weights}: tensor '${NORM_A}' has shape [8, 8] but config.json implies [64]`]);
  });
});

// ---- missing tensors and config mismatches -----------------------------------------------------------------

describe('checkpoint does not match config.json', () => {
  it('untied model without lm_head.weight: message about tie_word_embeddings', async () => {
    const { dir } = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      delete header['lm_head.weight'];
    }));
    await expectBadFolder(dir, [`${dir}: `, 'tie_word_embeddings is false', 'no lm_head.weight']);
  });

  it('a missing layer weight is named with its expected shape', async () => {
    const name = 'model.language_model.layers.2.mlp.up_proj.weight';
    const { dir } = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      delete header[name];
    }));
    await expectBadFolder(dir, [`${dir}: weight '${name}' is missing (expected shape [128, 64])`]);
    const visual = 'model.visual.deepstack_merger_list.1.linear_fc2.bias';
    const tiedDir = corrupt(TIED, ({ weights }) => editHeader(weights, (header) => {
      delete header[visual];
    })).dir;
    await expectBadFolder(tiedDir, [`${tiedDir}: weight '${visual}' is missing (expected shape [64])`]);
  });

  it('intermediate_size changed: shape message naming the file, the tensor and both shapes', async () => {
    const { dir, weights } = corrupt(UNTIED, ({ config }) => editConfig(config, (c) => {
      c.text_config.intermediate_size = 256;
    }));
    await expectBadFolder(dir, [`${weights}: tensor 'model.language_model.layers.0.mlp.gate_proj.weight' has shape [128, 64] but config.json implies [256, 64]`]);
  });

  it('hidden_size changed (text and vision out_hidden_size): shape message', async () => {
    const { dir, weights } = corrupt(UNTIED, ({ config }) => editConfig(config, (c) => {
      c.text_config.hidden_size = 128;
      c.vision_config.out_hidden_size = 128;
    }));
    await expectBadFolder(dir, [`${weights}: tensor '`, /has shape \[[\d, ]+\] but config\.json implies \[[\d, ]*128[\d, ]*\]/]);
  });

  it('vocab_size changed: the embedding is named', async () => {
    const { dir, weights } = corrupt(TIED, ({ config }) => editConfig(config, (c) => {
      c.text_config.vocab_size = 4096;
    }));
    await expectBadFolder(dir, [`${weights}: tensor 'model.language_model.embed_tokens.weight' has shape [2048, 64] but config.json implies [4096, 64]`]);
  });

  it('inconsistent or invalid config fields name config.json and the field', async () => {
    const cases: Array<[(c: any) => void, string]> = [
      [(c) => { c.text_config.hidden_size = 128; }, 'vision_config.out_hidden_size 64 differs from text_config.hidden_size 128'],
      [(c) => { c.model_type = 'qwen2_vl'; }, "model_type is 'qwen2_vl', pigg runs Qwen3-VL (model_type 'qwen3_vl')"],
      [(c) => { delete c.model_type; }, "model_type is ''"],
      [(c) => { delete c.text_config.vocab_size; }, 'text_config.vocab_size is missing'],
      [(c) => { c.text_config.num_hidden_layers = '4'; }, 'text_config.num_hidden_layers must be an integer'],
      [(c) => { c.vision_config.depth = 4.5; }, 'vision_config.depth must be an integer'],
      [(c) => { delete c.vision_config; }, 'vision_config is missing'],
      [(c) => { c.text_config.rope_scaling.mrope_section = [4, 2, 1]; }, 'mrope_section must have 3 entries summing to head_dim/2 (8), got sum 7'],
      [(c) => { c.text_config.rope_scaling.rope_type = 'yarn'; }, "text_config.rope_scaling.rope_type 'yarn' is not supported"],
      [(c) => { c.text_config.num_key_value_heads = 3; }, 'num_attention_heads must be a multiple of num_key_value_heads'],
      [(c) => { c.vision_config.deepstack_visual_indexes = [1, 4]; }, 'deepstack_visual_indexes entry 4 is outside 0..3'],
      [(c) => { c.vision_config.num_position_embeddings = 60; }, 'num_position_embeddings 60 is not a perfect square'],
      [(c) => { c.image_token_id = 2048; }, 'image_token_id 2048 is outside the vocabulary'],
      [(c) => { c.tie_word_embeddings = 'no'; }, 'tie_word_embeddings must be true or false'],
      [(c) => { c.vision_config.spatial_merge_size = 0; }, 'vision_config.spatial_merge_size must be positive, got 0'],
      [(c) => { c.text_config.num_hidden_layers = 0; }, 'text_config.num_hidden_layers must be positive, got 0'],
      [(c) => { c.text_config.head_dim = -16; }, 'text_config.head_dim must be positive, got -16'],
      [(c) => { c.text_config.rope_theta = 0; }, 'rope_theta must be positive'],
    ];
    for (const [edit, expected] of cases) {
      const { dir, config } = corrupt(UNTIED, ({ config }) => editConfig(config, edit));
      await expectBadFolder(dir, [`${config}: `, expected]);
    }
  });

  it('config.json missing, not JSON, or not an object', async () => {
    const missing = corrupt(UNTIED, ({ config }) => rmSync(config));
    await expectBadFolder(missing.dir, [`${missing.config}: cannot read`]);
    const broken = corrupt(UNTIED, ({ config }) => writeFileSync(config, '{"model_type": "qwen3_vl",'));
    await expectBadFolder(broken.dir, [`${broken.config}: not valid JSON`]);
    const array = corrupt(UNTIED, ({ config }) => writeFileSync(config, '[]'));
    await expectBadFolder(array.dir, [`${array.config}: not a JSON object`]);
  });

  it('not a directory, a missing folder, and a folder without weights', async () => {
    const file = join(UNTIED, 'model.safetensors');
    await expectBadFolder(file, [`${file}: not a directory`]);
    const nowhere = join(tmp, 'does-not-exist');
    await expectBadFolder(nowhere, [`${nowhere}: not a directory`]);
    const noWeights = corrupt(UNTIED, ({ weights }) => rmSync(weights));
    await expectBadFolder(noWeights.dir, [`${noWeights.dir}: no model.safetensors or model.safetensors.index.json`]);
  });

  it('a tied checkpoint that also stores lm_head.weight loads (untied head) with no warning', async () => {
    const { dir } = corrupt(TIED, ({ weights }) => {
      const tensors = readSafetensors(weights);
      tensors.set('lm_head.weight', tensors.get('model.language_model.embed_tokens.weight')!);
      writeSafetensors(weights, tensors);
    });
    const summary = await inspectCheckpoint(dir);
    expect(summary.tiedHead).toBe(false);
    expect(summary.warnings).toEqual([]);
  });

  it('an unexpected extra tensor is a warning naming it and its file, not an error', async () => {
    const { dir, weights } = corrupt(UNTIED, ({ weights }) => {
      const tensors = readSafetensors(weights);
      tensors.set('model.visual.extra.weight', tensorI64([1], [1]));
      writeSafetensors(weights, tensors);
    });
    const summary = await inspectCheckpoint(dir);
    expect(summary.warnings).toEqual([`unused tensor 'model.visual.extra.weight' in ${weights}`]);
    expect(summary.dtypes).toEqual({ F32: 116, I64: 1 });
  });
});

// ---- sharded checkpoints -----------------------------------------------------------------------------------

/** Splits a model folder into two shards (vision / text) with an index; returns the folder. */
function shard(source: string, edit?: (index: { weight_map: Record<string, string> }, dir: string) => void): string {
  const dir = join(tmp, `sharded-${++folderCount}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), readFileSync(join(source, 'config.json')));
  const tensors = readSafetensors(join(source, 'model.safetensors'));
  const shards: Array<Map<string, HostTensor>> = [new Map(), new Map()];
  const weightMap: Record<string, string> = {};
  for (const [name, tensor] of tensors) {
    const i = name.startsWith('model.visual.') ? 0 : 1;
    shards[i].set(name, tensor);
    weightMap[name] = `model-0000${i + 1}-of-00002.safetensors`;
  }
  shards.forEach((s, i) => writeSafetensors(join(dir, `model-0000${i + 1}-of-00002.safetensors`), s));
  const index = { metadata: { total_size: 0 }, weight_map: weightMap };
  edit?.(index, dir);
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index, null, 2));
  return dir;
}

function caseInputs(caseDir: string, names: string[]): NamedTensors {
  const inputs = readFixtureCase(caseDir).inputs;
  const out: NamedTensors = {};
  for (const name of names) if (inputs.has(name)) out[name] = inputs.get(name)!;
  return out;
}

describe('sharded checkpoints', () => {
  it('two shards + index give exactly the logits of the single file (untied, with an image)', async () => {
    const dir = shard(UNTIED);
    const inputs = caseInputs(CASE_A, ['input_ids', 'attention_mask', 'labels', 'pixel_values', 'image_grid_thw']);
    const single = await Qwen3VL.load(UNTIED);
    const sharded = await Qwen3VL.load(dir);
    try {
      const a = await single.forward(inputs, { outputs: ['logits', 'loss', 'image_embeds'] });
      const b = await sharded.forward(inputs, { outputs: ['logits', 'loss', 'image_embeds'] });
      for (const name of ['logits', 'loss', 'image_embeds']) {
        expect(b[name].shape, name).toEqual(a[name].shape);
        expect(Buffer.from(b[name].data.buffer, b[name].data.byteOffset, b[name].data.byteLength)
          .equals(Buffer.from(a[name].data.buffer, a[name].data.byteOffset, a[name].data.byteLength)), name).toBe(true);
      }
      const info = await sharded.info();
      expect(info.files).toEqual([join(dir, 'model-00001-of-00002.safetensors'), join(dir, 'model-00002-of-00002.safetensors')]);
      expect(info.parameters).toEqual((await single.info()).parameters);
      expect(info.tiedHead).toBe(false);
    } finally {
      single.dispose();
      sharded.dispose();
    }
  });

  it('tied sharded checkpoint generates the fixture tokens', async () => {
    const dir = shard(TIED);
    const model = await Qwen3VL.load(dir);
    try {
      const inputs = readFixtureCase(CASE_B).inputs;
      const result = await model.generate({
        input_ids: inputs.get('decode_input_ids')!, attention_mask: inputs.get('decode_attention_mask')!,
        pixel_values: inputs.get('pixel_values')!, image_grid_thw: inputs.get('image_grid_thw')!,
      }, { maxNewTokens: 8, eosTokenIds: [] });
      const meta = JSON.parse(readFileSync(join(CASE_B, 'case.json'), 'utf8'));
      expect(result.tokens).toEqual(meta.generated_tokens);
      expect((await model.info()).tiedHead).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it('index naming a shard that does not exist: names the index, the shard and a tensor', async () => {
    const tensor = 'model.language_model.norm.weight';
    const dir = shard(UNTIED, (index) => {
      index.weight_map[tensor] = 'model-00003-of-00003.safetensors';
    });
    await expectBadFolder(dir, [`${join(dir, 'model.safetensors.index.json')}: shard 'model-00003-of-00003.safetensors' (holding tensor '${tensor}') does not exist`]);
  });

  it('index naming a tensor absent from its shard', async () => {
    const tensor = 'model.language_model.norm.weight';
    const dir = shard(UNTIED, (index) => {
      index.weight_map[tensor] = 'model-00001-of-00002.safetensors'; // it lives in shard 2
    });
    await expectBadFolder(dir, [`${join(dir, 'model-00001-of-00002.safetensors')}: index names tensor '${tensor}' but the shard does not contain it`]);
  });

  it('index missing a tensor the model needs, bad index JSON, shard outside the folder, corrupt shard', async () => {
    const tensor = 'model.language_model.layers.1.self_attn.q_norm.weight';
    const dropped = shard(UNTIED, (index) => {
      delete index.weight_map[tensor];
    });
    await expectBadFolder(dropped, [`${dropped}: weight '${tensor}' is missing (expected shape [16])`]);
    const broken = shard(UNTIED);
    writeFileSync(join(broken, 'model.safetensors.index.json'), '{"weight_map": {');
    await expectBadFolder(broken, [`${join(broken, 'model.safetensors.index.json')}: not valid JSON`]);
    const noMap = shard(UNTIED);
    writeFileSync(join(noMap, 'model.safetensors.index.json'), '{"metadata": {}}');
    await expectBadFolder(noMap, [`${join(noMap, 'model.safetensors.index.json')}: missing weight_map object`]);
    const escape = shard(UNTIED, (index) => {
      index.weight_map[tensor] = '../model-00001-of-00002.safetensors';
    });
    await expectBadFolder(escape, [`${join(escape, 'model.safetensors.index.json')}: shard name '../model-00001-of-00002.safetensors' must be a plain file name`]);
    const notString = shard(UNTIED, (index) => {
      (index.weight_map as any)[tensor] = 7;
    });
    await expectBadFolder(notString, [`weight_map entry for '${tensor}' is not a file name`]);
    const corruptShard = shard(UNTIED);
    const second = join(corruptShard, 'model-00002-of-00002.safetensors');
    writeFileSync(second, readFileSync(second).subarray(0, -4));
    await expectBadFolder(corruptShard, [`${second}: tensor '`, 'past the end of the data section']);
  });
});

// ---- load options ------------------------------------------------------------------------------------------

describe('load options', () => {
  it.skipIf(engineVersions().cuda)("device 'cuda' without CUDA: a clear message, not a crash", async () => {
    const error = await rejection(Qwen3VL.load(UNTIED, { device: 'cuda' }));
    expect(error.message).toBe("device 'cuda' requested, but this libtorch has no CUDA support or no GPU is visible");
    const indexed = await rejection(Qwen3VL.load(UNTIED, { device: 'cuda:1' }));
    expect(indexed.message).toContain("device 'cuda:1' requested");
  });

  it('unknown devices and dtypes name the value and the choices', async () => {
    expect((await rejection(Qwen3VL.load(UNTIED, { dtype: 'fp16' as any }))).message).toBe("unknown dtype 'fp16' (use fp32 or bf16)");
    expect((await rejection(Qwen3VL.load(UNTIED, { device: 'tpu' }))).message).toBe("unknown device 'tpu' (use cpu, cuda or cuda:N)");
    expect((await rejection(Qwen3VL.load(UNTIED, { device: 'cuda:x' }))).message).toBe("unknown device 'cuda:x' (use cpu, cuda or cuda:N)");
  });
});

// ---- forward / generate inputs -----------------------------------------------------------------------------

describe('bad forward and generate inputs', () => {
  let model: Qwen3VL;
  let a: Map<string, HostTensor>;
  beforeAll(async () => {
    model = await Qwen3VL.load(UNTIED);
    a = readFixtureCase(CASE_A).inputs;
  });
  afterAll(() => model?.dispose());

  const ids = (values: bigint[], shape = [1, values.length]): HostTensor => ({ dtype: 'I64', shape, data: BigInt64Array.from(values) });
  const clone = (t: HostTensor): HostTensor => ({ dtype: t.dtype, shape: [...t.shape], data: t.data.slice() as HostTensor['data'] });
  const aInputs = (): NamedTensors => ({
    input_ids: clone(a.get('input_ids')!), attention_mask: clone(a.get('attention_mask')!), labels: clone(a.get('labels')!),
    pixel_values: a.get('pixel_values')!, image_grid_thw: clone(a.get('image_grid_thw')!),
  });
  const IMAGE = 1767n;

  async function forwardError(inputs: NamedTensors, outputs: any[] = ['logits']): Promise<string> {
    const error = await rejection(model.forward(inputs, { outputs }));
    expect(error.message.includes('\n'), error.message).toBe(false);
    expect(error.message).not.toMatch(/Exception raised from|frame #/);
    return error.message;
  }

  it('the unmodified inputs work (the baseline every error case departs from)', async () => {
    const out = await model.forward(aInputs());
    expect(out.logits.shape).toEqual([1, 29, 2048]);
    expect(out.loss.shape).toEqual([1]);
  });

  it('image token count that does not match the grids', async () => {
    const fewer = aInputs();
    const data = fewer.input_ids.data as BigInt64Array;
    data[data.indexOf(IMAGE)] = 100n;
    expect(await forwardError(fewer)).toBe('input_ids contain 5 image tokens but the images (image_grid_thw) give 6 image features');
    const noPixels = aInputs();
    delete noPixels.pixel_values;
    delete noPixels.image_grid_thw;
    expect(await forwardError(noPixels)).toBe('input_ids contain 6 image tokens but no pixel_values were given');
  });

  it('pixel_values rows not matching image_grid_thw, and bad grids', async () => {
    const rows = aInputs();
    (rows.image_grid_thw.data as BigInt64Array)[2] = 8n; // 1x4x8 = 32 patches, pixel_values has 24
    expect(await forwardError(rows)).toBe('pixel_values has 24 rows but image_grid_thw implies 32');
    const odd = aInputs();
    (odd.image_grid_thw.data as BigInt64Array)[1] = 3n;
    expect(await forwardError(odd)).toBe('image_grid_thw row 0 (1, 3, 6) is not a valid patch grid (h and w must be positive multiples of 2)');
    const width = aInputs();
    width.pixel_values = { dtype: 'F32', shape: [24, 768], data: (a.get('pixel_values')!.data as Float32Array).subarray(0, 24 * 768) };
    expect(await forwardError(width)).toBe('pixel_values must have shape [n_patches, 1536]');
    const noGrid = aInputs();
    delete noGrid.image_grid_thw;
    expect(await forwardError(noGrid)).toBe('pixel_values given without image_grid_thw');
    const gridShape = aInputs();
    gridShape.image_grid_thw = ids([1n, 4n, 6n, 1n], [2, 2]);
    expect(await forwardError(gridShape)).toBe('image_grid_thw must have shape [n_images, 3]');
    const intPixels = aInputs();
    intPixels.pixel_values = { dtype: 'I32', shape: [24, 1536], data: new Int32Array(24 * 1536) };
    expect(await forwardError(intPixels)).toBe('pixel_values must be a floating-point tensor');
  });

  it('image tokens split differently from the grids across the batch', async () => {
    // Case b: row 0 has 8 image tokens (grid 1x8x4), row 1 has 15 (1x6x10). Moving one image token from row 1
    // to row 0 keeps the total right but breaks the spans.
    const b = readFixtureCase(CASE_B).inputs;
    const input = clone(b.get('input_ids')!);
    const data = input.data as BigInt64Array;
    const length = input.shape[1];
    const row0Last = data.subarray(0, length).lastIndexOf(IMAGE);
    const row1First = data.subarray(length).indexOf(IMAGE) + length;
    data[row0Last + 1] = IMAGE; // the <vision_end> after row 0's span
    data[row1First] = 1764n;
    const message = await forwardError({ input_ids: input, attention_mask: b.get('attention_mask')!, pixel_values: b.get('pixel_values')!, image_grid_thw: b.get('image_grid_thw')! });
    expect(message).toMatch(/^input_ids row 0: image span has \d+ tokens expected by its grid but is interrupted at position \d+$/);
  });

  it('token ids outside the vocabulary', async () => {
    expect(await forwardError({ input_ids: ids([1n, 2048n]) })).toBe('input_ids contain a token id outside the vocabulary [0, 2048)');
    expect(await forwardError({ input_ids: ids([-1n, 5n]) })).toBe('input_ids contain a token id outside the vocabulary [0, 2048)');
    const genError = await rejection(model.generate({ input_ids: ids([3n, 99999n]) }, { maxNewTokens: 2 }));
    expect(genError.message).toBe('input_ids contain a token id outside the vocabulary [0, 2048)');
  });

  it('labels / attention_mask shape mismatch, bad input shapes and names', async () => {
    const labels = aInputs();
    labels.labels = ids(Array.from({ length: 28 }, () => -100n));
    expect(await forwardError(labels, ['logits', 'loss'])).toBe('labels must have the shape of input_ids');
    const mask = aInputs();
    mask.attention_mask = ids([1n, 1n], [1, 2]);
    expect(await forwardError(mask)).toBe('attention_mask must have the shape of input_ids');
    expect(await forwardError({ input_ids: ids([1n, 2n], [2]) })).toBe('input_ids must have shape [batch, length] with length > 0');
    expect(await forwardError({ input_ids: ids([], [1, 0]) })).toBe('input_ids must have shape [batch, length] with length > 0');
    expect(await forwardError({ input_ids: { dtype: 'F32', shape: [1, 2], data: Float32Array.from([1, 2]) } })).toBe('input_ids must be an integer tensor');
    expect(await forwardError({ attention_mask: ids([1n]) })).toBe("input 'input_ids' is required");
    expect(await forwardError({ input_ids: ids([1n]), token_type_ids: ids([0n]) })).toMatch(/^unknown input 'token_type_ids'/);
    expect(await forwardError({ input_ids: ids([1n, 2n]) }, ['loss'])).toBe("output 'loss' needs labels");
  });

  it('unknown output name', async () => {
    expect(await forwardError(aInputs(), ['logits', 'hidden_states'])).toBe("unknown forward output 'hidden_states'");
  });

  it('data that does not fit the declared shape is refused before reaching the engine', async () => {
    const error = await rejection(model.forward({ input_ids: { dtype: 'I64', shape: [1, 4], data: BigInt64Array.from([1n, 2n]) } }));
    expect(error.message).toContain('input_ids');
  });

  it('right-padded generation prompt, and maxNewTokens < 1', async () => {
    const c = readFixtureCase(CASE_C).inputs;
    // The training inputs of case c are RIGHT padded: generation must refuse them.
    const error = await rejection(model.generate({ input_ids: c.get('input_ids')!, attention_mask: c.get('attention_mask')! }, { maxNewTokens: 2 }));
    expect(error.message).toBe('generation prompts must be left padded: a row of attention_mask ends with padding');
    const zero = await rejection(model.generate({ input_ids: c.get('decode_input_ids')!, attention_mask: c.get('decode_attention_mask')! }, { maxNewTokens: 0 }));
    expect(zero.message).toBe('maxNewTokens must be at least 1');
  });

  it('the model still works after all of these errors', async () => {
    const out = await model.forward(aInputs(), { outputs: ['loss'] });
    const meta = JSON.parse(readFileSync(join(CASE_A, 'case.json'), 'utf8'));
    expect(Math.abs((out.loss.data as Float32Array)[0] - meta.loss)).toBeLessThan(1e-5);
  });
});

// ---- generation without a configured pad id ----------------------------------------------------------------

describe('generation pad id', () => {
  it('falls back to the first EOS id when neither config.json nor generation_config.json has one (as transformers does)', async () => {
    const { dir } = corrupt(UNTIED, ({ config }) => editConfig(config, (c) => {
      delete c.text_config.bos_token_id;
    }));
    const model = await Qwen3VL.load(dir);
    try {
      const info = await model.info();
      expect(info.config.eosTokenIds).toEqual([1757]);
      expect(info.config.padTokenId).toBe(1757);
      const c = readFixtureCase(CASE_C).inputs;
      const greedy = JSON.parse(readFileSync(join(CASE_C, 'case.json'), 'utf8')).generated_tokens as number[][];
      const eos = greedy[1][1];
      const result = await model.generate({ input_ids: c.get('decode_input_ids')!, attention_mask: c.get('decode_attention_mask')! },
        { maxNewTokens: 4, eosTokenIds: [eos] });
      expect(result.tokens[1]).toEqual([greedy[1][0], eos, 1757, 1757]);
      expect(result.tokens[0]).toEqual(greedy[0].slice(0, 4));
    } finally {
      model.dispose();
    }
  });

  it('generation_config.json: a pad id outside the vocabulary or broken JSON is named at load', async () => {
    const pad = corrupt(UNTIED, ({ dir }) => writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ pad_token_id: 5000 })));
    await expectBadFolder(pad.dir, [`${join(pad.dir, 'generation_config.json')}: pad_token_id 5000`, 'outside the vocabulary [0, 2048)']);
    const bos = corrupt(UNTIED, ({ config }) => editConfig(config, (c) => {
      c.text_config.bos_token_id = 2048;
    }));
    await expectBadFolder(bos.dir, [`${bos.config}: text_config.bos_token_id 2048`, 'outside the vocabulary']);
    const broken = corrupt(UNTIED, ({ dir }) => writeFileSync(join(dir, 'generation_config.json'), '{"eos_token_id": ['));
    await expectBadFolder(broken.dir, [`${join(broken.dir, 'generation_config.json')}: not valid JSON`]);
  });
});

// ---- pigg inspect ------------------------------------------------------------------------------------------

/** Parameter counts of a Qwen3-VL config, by hand from the layer shapes. */
function expectedParameters(config: any, tied: boolean): { vision: number; text: number; total: number } {
  const v = config.vision_config;
  const t = config.text_config;
  const merged = v.hidden_size * v.spatial_merge_size ** 2;
  const patch = v.hidden_size * v.in_channels * v.temporal_patch_size * v.patch_size ** 2 + v.hidden_size;
  const block = 4 * v.hidden_size /* norm1, norm2 weight + bias */
    + 3 * v.hidden_size * v.hidden_size + 3 * v.hidden_size /* qkv */
    + v.hidden_size * v.hidden_size + v.hidden_size /* proj */
    + 2 * v.intermediate_size * v.hidden_size + v.intermediate_size + v.hidden_size; /* fc1, fc2 */
  const mergerTail = merged * merged + merged + v.out_hidden_size * merged + v.out_hidden_size;
  const vision = patch + v.num_position_embeddings * v.hidden_size + v.depth * block
    + (2 * v.hidden_size + mergerTail) + v.deepstack_visual_indexes.length * (2 * merged + mergerTail);
  const h = t.hidden_size;
  const layer = 2 * h /* input / post-attention norms */ + t.num_attention_heads * t.head_dim * h * 2 /* q, o */
    + 2 * t.num_key_value_heads * t.head_dim * h /* k, v */ + 2 * t.head_dim /* q_norm, k_norm */ + 3 * t.intermediate_size * h;
  const text = t.vocab_size * h + t.num_hidden_layers * layer + h + (tied ? 0 : t.vocab_size * h);
  return { vision, text, total: vision + text };
}

function runCli(args: string[]): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

describe('pigg inspect (CLI)', () => {
  it('hand-computed parameter counts of the tiny models', () => {
    const config = JSON.parse(readFileSync(join(UNTIED, 'config.json'), 'utf8'));
    expect(expectedParameters(config, false)).toEqual({ vision: 484224, text: 410304, total: 894528 });
    expect(expectedParameters(config, true)).toEqual({ vision: 484224, text: 279232, total: 763456 });
  });

  it('good folders: summary with parameter counts, tensors and the shard list', async () => {
    for (const [dir, tied] of [[UNTIED, false], [TIED, true]] as const) {
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      const want = expectedParameters(config, tied);
      const text = runCli(['inspect', dir]);
      expect(text.stderr).toBe('');
      expect(text.status).toBe(0);
      const lines = text.stdout.trimEnd().split('\n');
      expect(lines[0]).toBe(`${dir}: Qwen3VLForConditionalGeneration (qwen3_vl)`);
      const m = (n: number) => `${(n / 1e6).toFixed(3)}M`;
      expect(lines).toContain(`  parameters  ${m(want.total)} total: vision ${m(want.vision)}, text ${m(want.text)}`);
      expect(lines).toContain(`  lm_head     ${tied ? 'tied to embed_tokens' : 'separate lm_head.weight'}`);
      const tensorCount = tied ? 115 : 116;
      expect(lines).toContain(`  tensors     ${tensorCount} (${tensorCount} F32)`);
      expect(lines).toContain('  shards      1: model.safetensors');
      expect(lines).toContain('  text        4 layers, hidden 64, heads 4/2 kv, head_dim 16, mlp 128, vocab 2048, '
        + `rope_theta ${tied ? 5000000 : 10000}, mrope [4,2,2]`);

      const json = runCli(['inspect', dir, '--json']);
      expect(json.status).toBe(0);
      const summary = JSON.parse(json.stdout);
      expect(summary.parameters).toEqual(want);
      expect(summary.tiedHead).toBe(tied);
      expect(summary.files).toEqual([join(dir, 'model.safetensors')]);
      expect(summary.tensors).toBe(tensorCount);
      // Same numbers through the library and a loaded model.
      expect((await inspectCheckpoint(dir)).parameters).toEqual(want);
    }
    const bf16 = JSON.parse(runCli(['inspect', `${UNTIED}-bf16`, '--json']).stdout);
    expect(bf16.dtypes).toEqual({ BF16: 116 });
    expect(bf16.parameters.total).toBe(894528);
  });

  it('a sharded folder lists its shards', () => {
    const dir = shard(UNTIED);
    const result = runCli(['inspect', dir]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('  shards      2: model-00001-of-00002.safetensors, model-00002-of-00002.safetensors\n');
    expect(result.stdout).toContain('  parameters  0.895M total: vision 0.484M, text 0.410M\n');
  });

  it('bad folders: exit code 1, one "pigg: " line naming the file and the tensor, nothing on stdout', () => {
    const norm = 'model.language_model.layers.0.input_layernorm.weight';
    const truncated = corrupt(UNTIED, ({ weights }) => writeFileSync(weights, readFileSync(weights).subarray(0, -100)));
    const badDtype = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      entry(header, norm).dtype = 'Q4';
    }));
    const mismatch = corrupt(UNTIED, ({ config }) => editConfig(config, (c) => {
      c.text_config.intermediate_size = 96;
    }));
    const noHead = corrupt(UNTIED, ({ weights }) => editHeader(weights, (header) => {
      delete header['lm_head.weight'];
    }));
    const cases: Array<[string, string[]]> = [
      [truncated.dir, [truncated.weights, "tensor 'model.visual.pos_embed.weight'", 'past the end']],
      [badDtype.dir, [badDtype.weights, `tensor '${norm}'`, "unknown dtype 'Q4'"]],
      [mismatch.dir, [mismatch.weights, "tensor 'model.language_model.layers.0.mlp.gate_proj.weight'", 'implies [96, 64]']],
      [noHead.dir, [noHead.dir, 'lm_head.weight', 'tie_word_embeddings']],
      [join(tmp, 'nothing-here'), [join(tmp, 'nothing-here'), 'not a directory']],
    ];
    for (const [dir, parts] of cases) {
      const result = runCli(['inspect', dir]);
      expect(result.signal, dir).toBeNull();
      expect(result.status, dir).toBeGreaterThanOrEqual(1);
      expect(result.status, dir).toBeLessThanOrEqual(127);
      expect(result.stdout).toBe('');
      const lines = result.stderr.split('\n').filter((line) => line.length > 0);
      expect(lines, result.stderr).toHaveLength(1);
      expect(lines[0].startsWith('pigg: ')).toBe(true);
      for (const part of parts) expect(lines[0]).toContain(part);
    }
  });

  it('usage errors exit 2 with a pigg: message', () => {
    const result = runCli(['inspect']);
    expect(result.signal).toBeNull();
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^pigg: error: missing required argument 'model-dir'/);
  });
});
