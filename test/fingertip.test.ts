import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { bboxForPoint, convertFingertip, parseA11yNodes, parseAction, writeFingertipDataset } from '../lib/data/fingertip.js';
import { readDataset } from '../lib/data/manifest.js';
import { register } from '../lib/cli/convert.js';

let root: string;
let src: string;

async function image(path: string, width: number, height: number, format: 'jpeg' | 'png'): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  const img = sharp({ create: { width, height, channels: 3, background: { r: 40, g: 90, b: 200 } } });
  await writeFile(path, await (format === 'jpeg' ? img.jpeg() : img.png()).toBuffer());
}

async function file(path: string, content: string): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
}

const line = (ts: string, action: string) => JSON.stringify({ [ts]: action });
const EP_A = [
  line('1000.jpg', "click(coordinates=(60, 100), content='蓝色加号按钮')"),
  '{"1001.jpg": "click(',
  line('1001.jpg', "type(text='7:00')"),
  line('1001.jpg', "click(coordinates=(500, 10), content='远处')"),
  line('1002.jpg', "click(coordinates=(10, 10), content='缺图')"),
  line('1001.jpg', "long_click(coordinates=(20, 230), content='保存')"),
  line('1001.jpg', 'finished()'),
];
const EP_C = [
  line('2000.png', "click(coordinates=(5, 5), content='微信')"),
  line('2001.jpg', "scroll(coordinates=(45, 100), direction='up')"),
  line('2001.jpg', "click(coordinates=(45, 150), content='发送')"),
];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pigg-fingertip-'));
  src = join(root, 'fingertip-20k');
  // User 1: Kaggle's doubled folder 1/1/. Episode A is complete; episode B has no action.jsonl.
  const a = join(src, '1', '1', '20250309_133115');
  await file(
    join(a, 'survey_result.json'),
    JSON.stringify({ user_id: 1, time: '20250309_133115', scenario: '家', app: 'com.huawei.deskclock', intentDescription: '设置一个早上七点的闹钟' }),
  );
  await file(join(a, 'action.jsonl'), `${EP_A.join('\n')}\n`);
  await file(
    join(a, 'Screenshots', 'tree_1000.xml'),
    '<?xml version="1.0"?><hierarchy><node class="android.widget.FrameLayout" clickable="false" bounds="[0,0][120,240]">' +
      '<node class="android.view.View" clickable="true" bounds="[0,60][120,140]">' +
      '<node class="android.widget.ImageButton" content-desc="添加" clickable="true" bounds="[40,80][80,120]" />' +
      '<node class="android.widget.ImageView" clickable="false" bounds="[55,95][65,105]" /></node></node></hierarchy>',
  );
  await file(join(a, 'Screenshots', 'tree_1001.xml'), '<hierarchy><node clickable="true" bounds="[0,0][50,50]"/></hierarchy>');
  await image(join(a, 'Screenshots', '1000.jpg'), 120, 240, 'jpeg');
  await image(join(a, 'Screenshots', '1001.jpg'), 120, 240, 'jpeg');
  const b = join(src, '1', '1', '20250310_080000');
  await file(join(b, 'survey_result.json'), JSON.stringify({ user_id: '1', intentDescription: 'x' }));
  await file(join(b, 'Screenshots', 'tree_3000.xml'), '<hierarchy/>');
  await image(join(b, 'Screenshots', '3000.jpg'), 10, 10, 'jpeg');
  // User 2: flat folder, Screenshots folder with a suffix. Episode C complete; episode D has no XML.
  const c = join(src, '2', '20250311_090000');
  await file(join(c, 'survey_result.json'), JSON.stringify({ user_id: '2', scenario: '学校', app: 'com.tencent.mm', intentDescription: '给妈妈发消息', intentClass: '社交' }));
  await file(join(c, 'action.jsonl'), `${EP_C.join('\n')}\n\n`);
  await file(join(c, 'Screenshots_20250311', 'tree_2000.xml'), '<hierarchy><node clickable="true" bounds="[0,0][30,30]"/></hierarchy>');
  await file(join(c, 'Screenshots_20250311', 'tree_2001.xml'), '<hierarchy><node clickable="true" bounds="[0,140][200,170]"/></hierarchy>');
  await image(join(c, 'Screenshots_20250311', '2000.png'), 90, 160, 'png');
  await image(join(c, 'Screenshots_20250311', '2001.jpg'), 90, 160, 'jpeg');
  const d = join(src, '2', '20250312_100000');
  await file(join(d, 'survey_result.json'), JSON.stringify({ user_id: '2', intentDescription: 'y' }));
  await file(join(d, 'action.jsonl'), `${line('4000.jpg', "click(coordinates=(1, 1), content='z')")}\n`);
  await image(join(d, 'Screenshots', '4000.jpg'), 10, 10, 'jpeg');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('action and XML helpers', () => {
  it('parses FingerTip action strings', () => {
    expect(parseAction("click(coordinates=(336, 1267), content='蓝色加号按钮')")).toEqual({
      name: 'click',
      point: { x: 336, y: 1267 },
      content: '蓝色加号按钮',
    });
    expect(parseAction(`click(coordinates=(1, 2), content="it's 'here'")`)).toMatchObject({ content: "it's 'here'" });
    expect(parseAction('press_back()')).toEqual({ name: 'press_back', point: null, content: null });
    expect(parseAction('garbage')).toBeNull();
  });

  it('picks the smallest clickable node containing the point, clipped to the image', () => {
    const nodes = parseA11yNodes(
      '<node clickable="false" bounds="[0,0][100,100]"/><node clickable="true" bounds="[-10,0][60,60]"/>' +
        '<node clickable="true" bounds="[20,20][40,40]"/><node long-clickable="true" bounds="[30,30][35,35]" visible="false"/>',
    );
    expect(nodes).toHaveLength(3);
    expect(bboxForPoint(nodes, { x: 25, y: 25 }, 100, 100)).toEqual([20, 20, 40, 40]);
    expect(bboxForPoint(nodes, { x: 5, y: 50 }, 100, 100)).toEqual([0, 0, 60, 60]);
    expect(bboxForPoint(nodes, { x: 90, y: 90 }, 100, 100)).toBeNull();
  });
});

describe('convertFingertip on a hand-made tree', () => {
  it('counts everything exactly', async () => {
    const { report, info } = await convertFingertip(src, join(root, 'out-mem'));
    expect(report).toMatchObject({
      users: 2,
      episodes: 4,
      episodes_complete: 2,
      episodes_incomplete: { missing_action_jsonl: 1, no_xml: 1 },
      action_lines: 10,
      bad_json_lines: 1,
      actions_by_type: { click: 5, type: 1, long_click: 1, finished: 1, scroll: 1 },
      samples: 3,
      samples_by_type: { click: 3 },
      skipped_actions: { out_of_bounds: 1, missing_screenshot: 1 },
      samples_with_bbox: 3,
      user_id_mismatches: 0,
    });
    expect(info).toMatchObject({ users: ['1', '2'], counts: { samples: 3, users: 2, episodes: 2 }, name: 'fingertip20k-click' });
  });

  it('builds samples with targets, sizes, bbox and history', async () => {
    const { samples } = await convertFingertip(src, join(root, 'out-mem'));
    expect(samples.map((s) => s.id)).toEqual([
      'fingertip20k/1/20250309_133115/0000',
      'fingertip20k/2/20250311_090000/0000',
      'fingertip20k/2/20250311_090000/0002',
    ]);
    const [a0, c0, c2] = samples;
    expect(a0).toMatchObject({
      user: '1',
      episode: '20250309_133115',
      step: 0,
      image: 'images/1/20250309_133115/1000.jpg',
      width: 120,
      height: 240,
      instruction: '设置一个早上七点的闹钟',
      referring: '蓝色加号按钮',
      action_type: 'click',
      target: { x: 60, y: 100 },
      bbox: [40, 80, 80, 120],
      bbox_source: 'a11y',
      history: [],
      context: { time: '20250309_133115', scenario: '家', app: 'com.huawei.deskclock', intent: '设置一个早上七点的闹钟' },
    });
    expect(a0!.meta).toEqual({
      raw_action: "click(coordinates=(60, 100), content='蓝色加号按钮')",
      src_image: '1/1/20250309_133115/Screenshots/1000.jpg',
      xml: '1/1/20250309_133115/Screenshots/tree_1000.xml',
    });
    expect(c0).toMatchObject({ width: 90, height: 160, target: { x: 5, y: 5 }, bbox: [0, 0, 30, 30], image: 'images/2/20250311_090000/2000.png' });
    expect(c0!.context).toMatchObject({ intent_class: '社交' });
    expect(c2).toMatchObject({
      step: 2,
      target: { x: 45, y: 150 },
      bbox: [0, 140, 90, 160],
      history: ["click(coordinates=(5, 5), content='微信')", "scroll(coordinates=(45, 100), direction='up')"],
    });
  });

  it('adds long_click samples behind the option, with the history before them', async () => {
    const { samples, report } = await convertFingertip(src, join(root, 'out-mem'), { longClick: true });
    expect(report.samples_by_type).toEqual({ click: 3, long_click: 1 });
    const lc = samples.find((s) => s.action_type === 'long_click')!;
    expect(lc).toMatchObject({ id: 'fingertip20k/1/20250309_133115/0005', target: { x: 20, y: 230 }, bbox: null, bbox_source: null });
    expect(lc.history).toEqual([EP_A[0], EP_A[2], EP_A[3], EP_A[4]].map((l) => Object.values(JSON.parse(l) as Record<string, string>)[0]));
  });

  it('referring mode builds the instruction from content', async () => {
    const { samples } = await convertFingertip(src, join(root, 'out-mem'), { instruction: 'referring' });
    expect(samples.map((s) => s.instruction)).toEqual(['点击「蓝色加号按钮」', '点击「微信」', '点击「发送」']);
    expect(samples[0]!.context).toMatchObject({ intent: '设置一个早上七点的闹钟' });
  });

  it('rejects a missing source', async () => {
    await expect(convertFingertip(join(root, 'nope'), join(root, 'o'))).rejects.toThrow(/is not a directory/);
  });
});

describe('writing the dataset', () => {
  it('symlinks images by default and writes a valid dataset + report', async () => {
    const out = join(root, 'out-link');
    const report = await writeFingertipDataset(src, out);
    const ds = await readDataset(out, { checkImages: true });
    expect(ds.samples).toHaveLength(3);
    const img = join(out, 'images/1/20250309_133115/1000.jpg');
    expect((await lstat(img)).isSymbolicLink()).toBe(true);
    expect(await readlink(img)).toBe(join(src, '1/1/20250309_133115/Screenshots/1000.jpg'));
    expect(JSON.parse(await readFile(join(out, 'report.json'), 'utf8'))).toEqual(report);
    // A second run over the same output replaces the links instead of failing.
    await expect(writeFingertipDataset(src, out)).resolves.toMatchObject({ samples: 3 });
  });

  it('copies images with copyImages', async () => {
    const out = join(root, 'out-copy');
    await writeFingertipDataset(src, out, { copyImages: true });
    const img = join(out, 'images/2/20250311_090000/2000.png');
    expect((await lstat(img)).isFile()).toBe(true);
    expect((await sharp(img).metadata()).width).toBe(90);
  });

  it('pigg convert-fingertip runs through the CLI', async () => {
    const out = join(root, 'out-cli');
    let stdout = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
    try {
      const program = new Command().exitOverride();
      register(program);
      await program.parseAsync(['node', 'pigg', 'convert-fingertip', src, '--out', out, '--long-click', '--instruction', 'referring']);
    } finally {
      spy.mockRestore();
    }
    expect(stdout).toMatch(/^converted 4 samples from 2 users, 2 episodes \(2 incomplete episodes, 1 bad lines, 2 skipped actions\)/);
    const ds = await readDataset(out);
    expect(ds.info.name).toBe('fingertip20k-click-longclick');
    expect(ds.samples[0]!.instruction).toBe('点击「蓝色加号按钮」');
  });
});
