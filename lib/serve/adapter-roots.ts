// Where POST /v1/adapters may read adapters from: only folders under the configured roots (`--adapter-root`, and the
// `--adapters` folder), named by the client relative to a root (or absolute, inside one). Symbolic links are
// resolved before the check, so a link inside a root cannot lead out of it. A path outside every root gets the same
// answer whether it exists or not, and no answer names a server folder.
import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { ApiError, badRequest } from './errors.js';

export class AdapterRoots {
  private readonly roots: string[];

  constructor(roots: readonly string[]) {
    this.roots = roots.map((root) => realpathSync(resolve(root)));
  }

  get configured(): boolean {
    return this.roots.length > 0;
  }

  /** The folder a client's path names, inside a root; an ApiError (param 'path') otherwise. */
  resolve(path: string): string {
    if (!this.configured) {
      throw new ApiError(403, 'adapter_loading_disabled', 'this server loads no adapters at run time: start it with --adapter-root DIR (or --adapters DIR)', 'path', 'invalid_request_error');
    }
    if (path.includes('\u0000')) throw badRequest('invalid_path', 'path holds a NUL character', 'path');
    const outside = () => badRequest('invalid_path', `path must name an adapter folder under one of the server's adapter roots, relative to it`, 'path');
    for (const root of this.roots) {
      const candidate = isAbsolute(path) ? resolve(path) : resolve(root, path);
      let real: string;
      try {
        real = realpathSync(candidate);
      } catch {
        if (within(root, candidate)) throw badRequest('invalid_path', `no adapter folder '${this.show(candidate)}' under the adapter roots`, 'path');
        continue;
      }
      if (within(root, real) && real !== root) return real;
    }
    throw outside();
  }

  /** A server path as clients may see it: relative to the root it is under. */
  show(path: string): string {
    const root = this.roots.find((r) => within(r, path));
    return root === undefined ? '(outside the adapter roots)' : relative(root, path) || '.';
  }

  /** A message (a native error's, say) with the roots' own paths cut out, so paths in it are relative to a root. */
  redact(message: string): string {
    return withoutFolders(message, this.roots);
  }
}

/** `text` with each folder's path cut out: paths under one read relative to it, the folder itself as '.'. */
export function withoutFolders(text: string, folders: readonly string[]): string {
  return folders.reduce((out, folder) => out.split(folder + sep).join('').split(folder).join('.'), text);
}

function within(root: string, path: string): boolean {
  return path === root || path.startsWith(root + sep);
}
