import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadScreenSpot, loadScreenSpotPro, pointInBoxAccuracy } from '../lib/data/screenspot.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pigg-screenspot-'));
  await mkdir(join(root, 'imgs'));
  const png = await sharp({ create: { width: 200, height: 400, channels: 3, background: '#ffffff' } }).png().toBuffer();
  await writeFile(join(root, 'imgs', 'mobile_1.png'), png);
  await writeFile(
    join(root, 'screenspot_mobile_v2.json'),
    JSON.stringify([
      { img_filename: 'mobile_1.png', bbox: [10, 20, 30, 40], instruction: 'open settings', data_type: 'icon', data_source: 'android' },
      { img_filename: 'mobile_1.png', bbox: [180, 390, 40, 20], instruction: 'tap the corner', data_type: 'text', data_source: 'ios' },
    ]),
  );
  await writeFile(
    join(root, 'pro.json'),
    JSON.stringify([
      {
        id: 'autocad_1',
        img_filename: 'autocad/shot.png',
        bbox: [1000, 500, 1100, 540],
        img_size: [2560, 1440],
        instruction: 'draw a line',
        instruction_cn: '画一条线',
        platform: 'windows',
        application: 'autocad',
        group: 'CAD',
        ui_type: 'icon',
      },
    ]),
  );
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('ScreenSpot v1/v2', () => {
  it('converts [x, y, w, h] boxes, reads the image size, centres the target', async () => {
    const samples = await loadScreenSpot(join(root, 'screenspot_mobile_v2.json'), join(root, 'imgs'));
    expect(samples[0]).toMatchObject({
      id: 'screenspot-v2/mobile/0000',
      source: 'screenspot-v2',
      user: 'android',
      episode: 'mobile',
      image: 'images/mobile_1.png',
      width: 200,
      height: 400,
      instruction: 'open settings',
      target: { x: 25, y: 40 },
      bbox: [10, 20, 40, 60],
      context: { ui_type: 'icon', group: 'mobile', platform: 'android' },
      meta: { src_image: join(root, 'imgs', 'mobile_1.png') },
    });
  });

  it('clips an overhanging box and keeps the raw one', async () => {
    const [, corner] = await loadScreenSpot(join(root, 'screenspot_mobile_v2.json'), join(root, 'imgs'), { imagePrefix: 'ss/' });
    expect(corner).toMatchObject({ bbox: [180, 390, 200, 400], target: { x: 190, y: 395 }, image: 'ss/mobile_1.png' });
    expect(corner!.meta).toMatchObject({ raw_bbox: [180, 390, 220, 410] });
  });

  it('names the record and field of a bad annotation', async () => {
    const file = join(root, 'screenspot_web.json');
    await writeFile(file, JSON.stringify([{ img_filename: 'mobile_1.png', bbox: [1, 2, 3], instruction: 'x' }]));
    await expect(loadScreenSpot(file, join(root, 'imgs'))).rejects.toThrow(`${file}[0]: field 'bbox' must be [x, y, w, h]`);
    await writeFile(file, JSON.stringify([{ img_filename: 'missing.png', bbox: [1, 2, 3, 4], instruction: 'x' }]));
    await expect(loadScreenSpot(file, join(root, 'imgs'))).rejects.toThrow(/\[0\]: field 'img_filename': cannot read image/);
  });
});

describe('ScreenSpot-Pro', () => {
  it('uses [x1, y1, x2, y2] and img_size', async () => {
    const [s] = await loadScreenSpotPro(join(root, 'pro.json'), join(root, 'pro-images'));
    expect(s).toMatchObject({
      id: 'screenspot-pro/autocad_1',
      user: 'windows',
      episode: 'autocad',
      width: 2560,
      height: 1440,
      target: { x: 1050, y: 520 },
      bbox: [1000, 500, 1100, 540],
      instruction: 'draw a line',
      context: { group: 'CAD', ui_type: 'icon', application: 'autocad' },
    });
    const [cn] = await loadScreenSpotPro(join(root, 'pro.json'), join(root, 'pro-images'), { chinese: true });
    expect(cn!.instruction).toBe('画一条线');
  });

  it('rejects a missing img_size', async () => {
    const file = join(root, 'pro-bad.json');
    await writeFile(file, JSON.stringify([{ img_filename: 'a.png', bbox: [0, 0, 1, 1], instruction: 'x' }]));
    await expect(loadScreenSpotPro(file, root)).rejects.toThrow(`${file}[0]: field 'img_size' is missing`);
  });
});

describe('pointInBoxAccuracy', () => {
  it('maps grid predictions to pixels and counts hits by group', async () => {
    const samples = [
      ...(await loadScreenSpot(join(root, 'screenspot_mobile_v2.json'), join(root, 'imgs'))),
      ...(await loadScreenSpotPro(join(root, 'pro.json'), root)),
    ];
    // Sample 0: box x 10..40 of 200 px, y 20..60 of 400 px -> grid x 50..200, y 50..150.
    const result = pointInBoxAccuracy(samples, [{ x: 200, y: 50 }, null, { x: 410, y: 361 }]);
    expect(result).toEqual({
      hits: 2,
      n: 3,
      accuracy: 2 / 3,
      groups: {
        'mobile/icon': { hits: 1, n: 1, accuracy: 1 },
        'mobile/text': { hits: 0, n: 1, accuracy: 0 },
        'CAD/icon': { hits: 1, n: 1, accuracy: 1 },
      },
    });
    // 410/1000*2560 = 1049.6 px is inside 1000..1100, 361/1000*1440 = 519.84 is inside 500..540.
    expect(pointInBoxAccuracy(samples.slice(2), [{ x: 410, y: 376 }]).hits).toBe(0); // 541.44 px > 540
    expect(pointInBoxAccuracy(samples.slice(0, 1), [{ x: 201, y: 50 }]).hits).toBe(0);
    expect(() => pointInBoxAccuracy(samples, [])).toThrow(/3 samples/);
  });
});
