// Where pigg itself lies (the clone, or node_modules/pigg in a project using it) and what it is.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDevelopmentCheckout } from '../scripts/libtorch.mjs';

/** The package folder: package.json, build/Release/pigg.node (dist/package.js is one level down). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function piggVersion(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

export { isDevelopmentCheckout };

/** The command that builds the addon here: the clone's build, or the install step of an installed pigg. */
export function buildCommand(): string {
  return isDevelopmentCheckout() ? 'npm run build' : 'npm rebuild pigg';
}

/** The command that installs pigg's dependencies again. */
export function reinstallCommand(): string {
  return isDevelopmentCheckout() ? 'npm ci' : 'npm install pigg';
}
