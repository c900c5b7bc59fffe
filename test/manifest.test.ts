import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  listUsers,
  parseUserSpec,
  readDataset,
  readManifest,
  sampleToJsonLine,
  selectSamples,
  writeDataset,
} from '../lib/data/manifest.js';
import type { DatasetInfo, Sample } from '../lib/data/types.js';

const sample = (over: Partial<Sample> = {}): Sample => ({
  id: 'fingertip20k/1/20250309_133115/0003',
  source: 'fingertip20k',
  user: '1',
  episode: '20250309_133115',
  step: 3,
  image: 'images/1/20250309_133115/1741498279844.jpg',
  width: 1080,
  height: 2340,
  instruction: '设置一个闹钟',
  referring: '蓝色加号按钮',
  action_type: 'click',
  target: { x: 336, y: 1267 },
  bbox: [300, 1200, 372, 1334],
  bbox_source: 'a11y',
  history: ["click(coordinates=(10, 20), content='时钟')"],
  ...over,
});

const info = (over: Partial<DatasetInfo> = {}): DatasetInfo => ({
  schema: 'gg-sample/1',
  name: 'test',
  source: 'fingertip20k',
  created_by: 'test',
  coord_space: 'pixel',
  users: ['1'],
  counts: { samples: 1 },
  ...over,
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pigg-manifest-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function manifestWith(lines: string[]): Promise<string> {
  const file = join(dir, 'manifest.jsonl');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

describe('manifest round trip', () => {
  it('writes keys in the fixed order and reads back equal samples', async () => {
    const a = sample();
    const b = sample({ id: 'x/2', user: '2', bbox: null, bbox_source: null, history: undefined, referring: null });
    await writeDataset(dir, info({ users: ['1', '2'], counts: { samples: 2 } }), [a, b]);
    const text = await readFile(join(dir, 'manifest.jsonl'), 'utf8');
    expect(text.split('\n')).toHaveLength(3);
    expect(Object.keys(JSON.parse(text.split('\n')[0]!))).toEqual([
      'id', 'source', 'user', 'episode', 'step', 'image', 'width', 'height', 'instruction', 'referring',
      'action_type', 'target', 'bbox', 'bbox_source', 'history',
    ]);
    const ds = await readDataset(dir);
    expect(ds.samples).toEqual([a, JSON.parse(sampleToJsonLine(b))]);
    expect(ds.samples[1]!.history).toBeUndefined();
    expect(ds.info.users).toEqual(['1', '2']);
    // Atomic writes leave no temp files behind.
    expect((await readdir(dir)).sort()).toEqual(['dataset.json', 'manifest.jsonl']);
  });

  it('refuses to write an invalid sample and leaves the directory untouched', async () => {
    await expect(writeDataset(dir, info(), [sample({ width: 0 })])).rejects.toThrow(/sample 1 .*field 'width'/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('checkImages names the missing image', async () => {
    await writeDataset(dir, info(), [sample()]);
    await expect(readDataset(dir, { checkImages: true })).rejects.toThrow(/sample 1 .*field 'image' names a missing file/);
    await mkdir(join(dir, 'images/1/20250309_133115'), { recursive: true });
    await writeFile(join(dir, 'images/1/20250309_133115/1741498279844.jpg'), 'x');
    await expect(readDataset(dir, { checkImages: true })).resolves.toMatchObject({ samples: [{ step: 3 }] });
  });

  it('rejects a bad dataset.json', async () => {
    await writeDataset(dir, info(), [sample()]);
    await writeFile(join(dir, 'dataset.json'), JSON.stringify({ ...info(), schema: 'other/2' }));
    await expect(readDataset(dir)).rejects.toThrow(/dataset\.json: field 'schema' must be 'gg-sample\/1'/);
  });
});

describe('schema errors name the file, line and field', () => {
  const good = JSON.stringify(sample());
  const bad = (over: Record<string, unknown>, drop?: string) => {
    const record: Record<string, unknown> = { ...sample({ id: 'bad' }), ...over };
    if (drop) delete record[drop];
    return JSON.stringify(record);
  };
  const cases: Array<[string, string, RegExp]> = [
    ['missing id', bad({}, 'id'), /field 'id' is missing/],
    ['numeric user', bad({ user: 1 }), /field 'user' must be a string/],
    ['negative step', bad({ step: -1 }), /field 'step' must be an integer >= 0/],
    ['fractional width', bad({ width: 10.5 }), /field 'width' must be an integer > 0/],
    ['missing referring', bad({}, 'referring'), /field 'referring' is missing/],
    ['target x = width', bad({ target: { x: 1080, y: 5 } }), /field 'target\.x' 1080 is outside \[0, 1080\)/],
    ['negative target y', bad({ target: { x: 5, y: -1 } }), /field 'target\.y' -1 is outside/],
    ['string target', bad({ target: { x: '5', y: 1 } }), /field 'target\.x' must be a finite number/],
    ['bbox of 3', bad({ bbox: [1, 2, 3] }), /field 'bbox' must be null or \[x1, y1, x2, y2\]/],
    ['inverted bbox', bad({ bbox: [50, 2, 10, 4] }), /field 'bbox' \[50, 2, 10, 4\] has x1 > x2/],
    ['bbox off image', bad({ bbox: [0, 0, 2000, 10] }), /field 'bbox' .* is outside the 1080x2340 image/],
    ['history of numbers', bad({ history: [1] }), /field 'history' must be an array of strings/],
    ['absolute image', bad({ image: '/etc/passwd' }), /field 'image' must be a path inside/],
    ['escaping image', bad({ image: 'images/../../x.jpg' }), /field 'image' must be a path inside/],
    ['not an object', '[1, 2]', /record must be a JSON object/],
    ['broken JSON', '{"id": ', /invalid JSON/],
  ];
  it.each(cases)('%s', async (_name, line, message) => {
    const file = await manifestWith([good, '', line]);
    const error = await readManifest(file).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error!.message.startsWith(`${file}:3: `)).toBe(true);
    expect(error!.message).toMatch(message);
  });

  it('duplicate id names both lines', async () => {
    const file = await manifestWith([good, JSON.stringify(sample({ id: 'other', step: 4 })), good]);
    await expect(readManifest(file)).rejects.toThrow(`${file}:3: field 'id' duplicates 'fingertip20k/1/20250309_133115/0003' from line 1`);
  });
});

describe('users', () => {
  it('lists users numerically', () => {
    expect(listUsers(['10', '2', '1', '2', 'zed', '11'].map((user) => ({ user })))).toEqual(['1', '2', '10', '11', 'zed']);
  });

  it('parses ranges and ids', () => {
    const spec = parseUserSpec('1-10, 15 alice');
    expect(['1', '10', '11', '15', '07', 'alice', 'bob'].filter((u) => spec.includes(u))).toEqual(['1', '10', '15', '07', 'alice']);
    const global = parseUserSpec('11-83');
    expect(global.includes('11') && global.includes('83') && !global.includes('84') && !global.includes('10')).toBe(true);
  });

  it('selects samples by spec, keeping order', () => {
    const samples = ['3', '12', '1', '83', '99'].map((user, i) => ({ user, i }));
    expect(selectSamples(samples, '1-10').map((s) => s.i)).toEqual([0, 2]);
    expect(selectSamples(samples, parseUserSpec('11-83')).map((s) => s.user)).toEqual(['12', '83']);
  });

  it.each([
    ['', /selects no users/],
    ['10-1', /range '10-1' is empty/],
    ['1-', /cannot read '1-'/],
    ['a;b', /cannot read 'a;b'/],
  ])('rejects %j', (spec, message) => {
    expect(() => parseUserSpec(spec)).toThrow(message);
  });
});
