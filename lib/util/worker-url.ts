// Where a worker thread's script is: a worker runs compiled JavaScript, so beside the calling module in dist/, or,
// when the caller runs from the TypeScript sources (vitest), the compiled file of the same tree.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The compiled `file` (e.g. 'image-worker.js') of the lib/ folder that `callerUrl` (import.meta.url) is in. */
export function workerUrl(callerUrl: string, file: string): URL {
  const sibling = new URL(`./${file}`, callerUrl);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  const source = fileURLToPath(sibling);
  const lib = source.lastIndexOf('/lib/');
  const compiled = lib < 0 ? null : `${source.slice(0, lib)}/dist/${source.slice(lib + '/lib/'.length)}`;
  if (compiled && existsSync(compiled)) return pathToFileURL(compiled);
  throw new Error(`worker script not found at ${source}${compiled ? ` or ${compiled}` : ''} (build with npm run build:ts)`);
}
