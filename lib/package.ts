// Where pigg itself lies (the clone, or node_modules/pigg in a project using it) and what it is.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package folder: package.json, build/Release/pigg.node (dist/package.js is one level down). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function piggVersion(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** A development checkout has the TypeScript sources (they are not in the published package). */
export function isDevelopmentCheckout(): boolean {
  return existsSync(join(PACKAGE_ROOT, 'lib', 'index.ts'));
}

/** The command that builds the addon here: the clone's build, or the install step of an installed pigg. */
export function buildCommand(): string {
  return isDevelopmentCheckout() ? 'npm run build' : 'npm rebuild pigg';
}

/** The command that installs pigg's dependencies again. */
export function reinstallCommand(): string {
  return isDevelopmentCheckout() ? 'npm ci' : 'npm install pigg';
}
