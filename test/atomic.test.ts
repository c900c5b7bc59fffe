// writeFolderAtomic: a folder appears whole or not at all (pigg init-random writes its model folder through it).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFolderAtomic } from '../lib/atomic.js';

const tmp = mkdtempSync(join(tmpdir(), 'pigg-atomic-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('writeFolderAtomic', () => {
  it('creates the folder (and its parents) with what write put in the temp folder, leaving nothing else', async () => {
    const dir = join(tmp, 'a', 'model');
    await writeFolderAtomic(dir, async (temp) => {
      expect(existsSync(dir)).toBe(false);  // nothing is visible while writing
      writeFileSync(join(temp, 'config.json'), '{}');
    });
    expect(readdirSync(dir)).toEqual(['config.json']);
    expect(readdirSync(join(tmp, 'a'))).toEqual(['model']);
  });

  it('replaces an existing folder whole', async () => {
    const dir = join(tmp, 'b');
    await writeFolderAtomic(dir, async (temp) => writeFileSync(join(temp, 'old.txt'), 'old'));
    await writeFolderAtomic(dir, async (temp) => writeFileSync(join(temp, 'new.txt'), 'new'));
    expect(readdirSync(dir)).toEqual(['new.txt']);
    expect(readdirSync(tmp).filter((name) => name.includes('b'))).toEqual(['b']);
  });

  it('a failing write leaves no folder, or the previous one untouched, and no temp folder', async () => {
    const failing = (temp: string) => {
      writeFileSync(join(temp, 'half.bin'), 'half');
      return Promise.reject(new Error('disk full'));
    };
    await expect(writeFolderAtomic(join(tmp, 'c'), failing)).rejects.toThrow('disk full');
    const kept = join(tmp, 'd');
    await writeFolderAtomic(kept, async (temp) => writeFileSync(join(temp, 'good.txt'), 'good'));
    await expect(writeFolderAtomic(kept, failing)).rejects.toThrow('disk full');
    expect(readFileSync(join(kept, 'good.txt'), 'utf8')).toBe('good');
    expect(readdirSync(kept)).toEqual(['good.txt']);
    expect(readdirSync(tmp).filter((name) => /^\.?[cd]/.test(name))).toEqual(['d']);
  });
});
