// The layering of lib/: every relative import (type-only ones too) stays on its floor or goes down, and no files
// import each other in a circle. Floors, bottom to top; an area on a floor may import the areas on its own floor.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const LIB = fileURLToPath(new URL('../lib/', import.meta.url));
const FLOORS = [
  ['util', 'atomic', 'safetensors', 'package'],
  ['data', 'processor', 'engine'],
  ['training'],
  ['grounding'],
  ['personalize'],
  // The report reads result files (data/); the demo and visualize of experiments/ end by drawing with it.
  ['serve', 'experiments', 'report'],
  ['cli'],
  ['index'],
];

const files = readdirSync(LIB, { recursive: true, encoding: 'utf8' }).filter((f) => /\.c?ts$/.test(f)).map((f) => join(LIB, f));
const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?\bfrom\s+['"](\.[^'"]+)['"]|\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g;

/** lib/ files a file imports (the .js of a .ts source, the .cjs of a .cts); imports outside lib/ (scripts/) are left out. */
const imports = new Map(files.map((file) => [file, [...readFileSync(file, 'utf8').matchAll(IMPORT)]
  .map((m) => resolve(dirname(file), m[1] ?? m[2]!).replace(/\.(c?)js$/, '.$1ts'))
  .filter((target) => target.startsWith(LIB))]));

const area = (file: string) => relative(LIB, file).split('/')[0]!.replace(/\.c?ts$/, '');
const floorOf = (file: string) => FLOORS.findIndex((floor) => floor.includes(area(file)));
const name = (file: string) => relative(LIB, file);

describe('lib/ layering', () => {
  it('puts every file on a floor', () => {
    expect(files.filter((file) => floorOf(file) < 0).map(name)).toEqual([]);
  });

  it('has no import running up the floors', () => {
    const upward = [...imports].flatMap(([file, targets]) => targets.filter((target) => floorOf(target) > floorOf(file)).map((target) => `${name(file)} -> ${name(target)}`));
    expect(upward).toEqual([]);
  });

  it('has no import circle', () => {
    const circles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const path: string[] = [];
    const visit = (file: string) => {
      state.set(file, 'open');
      path.push(file);
      for (const target of imports.get(file) ?? []) {
        if (state.get(target) === 'open') circles.push(path.slice(path.indexOf(target)).concat(target).map(name).join(' -> '));
        else if (!state.has(target)) visit(target);
      }
      path.pop();
      state.set(file, 'done');
    };
    for (const file of files) if (!state.has(file)) visit(file);
    expect(circles).toEqual([]);
  });
});
