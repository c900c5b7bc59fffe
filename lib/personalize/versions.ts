// The versions a user is served: promoted adapter folders (adapters/<user>/v<N>/, kept), the pointer to the one
// served (current.json, written atomically after its folder), the Grounder serving it under the user's id, and a
// per-user lock under which promotions and rollbacks of one user run one after another.
import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Grounder } from '../grounding/grounder.js';
import { renameDurable, writeFileDurable } from './durable.js';
import { checkUser, feedbackError } from './store.js';
import type { CurrentPointer, Decision, HeldOutMetrics } from './types.js';

/** The folder a job saves its candidate to, beside the versions. */
const CANDIDATE = 'candidate';
const VERSION_DIR = /^v([1-9][0-9]*)$/;

export class ServedVersions {
  private readonly pointers = new Map<string, CurrentPointer>();
  private readonly userLocks = new Map<string, Promise<unknown>>();

  constructor(private readonly dir: string, private readonly grounder: Grounder) {}

  /** adapters/<user>/ */
  folder(user: string): string {
    return join(this.dir, 'adapters', user);
  }

  candidateFolder(user: string): string {
    return join(this.folder(user), CANDIDATE);
  }

  /** The folder of the version a pointer names. */
  versionFolder(user: string, pointer: CurrentPointer): string {
    return join(this.folder(user), pointer.path ?? `v${pointer.version}`);
  }

  current(user: string): CurrentPointer | null {
    return this.pointers.get(user) ?? null;
  }

  /** The version served (null: the base model). */
  served(user: string): number | null {
    return this.pointers.get(user)?.version ?? null;
  }

  /** Users with a pointer. */
  users(): string[] {
    return [...this.pointers.keys()];
  }

  has(user: string): boolean {
    return this.pointers.has(user);
  }

  /** Promoted versions of the user kept on disk, ascending. */
  async list(user: string): Promise<number[]> {
    const dir = this.folder(checkUser(user));
    if (!existsSync(dir)) return [];
    return (await readdir(dir))
      .flatMap((name) => {
        const m = VERSION_DIR.exec(name);
        return m && existsSync(join(dir, name, 'adapter_config.json')) ? [Number(m[1])] : [];
      })
      .sort((a, b) => a - b);
  }

  /** Runs fn after the user's earlier promotions and rollbacks. */
  withUser<T>(user: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.userLocks.get(user) ?? Promise.resolve()).then(fn);
    this.userLocks.set(user, run.catch(() => {}));
    return run;
  }

  /** Reads every user's pointer and has the Grounder serve the version it names; leftovers of killed writes go. */
  async restore(warn: (message: string) => void): Promise<void> {
    const adapters = join(this.dir, 'adapters');
    const users = existsSync(adapters) ? (await readdir(adapters, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name) : [];
    for (const user of users) {
      const dir = this.folder(user);
      // Leftovers of a job or a folder write a kill interrupted.
      for (const entry of await readdir(dir)) {
        if (entry === CANDIDATE || entry.startsWith('.')) await rm(join(dir, entry), { recursive: true, force: true });
      }
      const pointerFile = join(dir, 'current.json');
      if (!existsSync(pointerFile)) continue;
      const pointer = JSON.parse(await readFile(pointerFile, 'utf8')) as CurrentPointer;
      if (pointer.version !== null) {
        try {
          await this.grounder.addAdapter(user, this.versionFolder(user, pointer));
        } catch (error) {
          warn(`user ${user}: cannot serve version ${pointer.version} (${(error as Error).message}); serving the base model`);
          continue;
        }
      }
      this.pointers.set(user, pointer);
    }
  }

  /**
   * Makes the candidate the user's next version and serves it: its folder renamed to v<N>, then the pointer written.
   * Call under withUser. Answers the version.
   */
  async promote(user: string, promoted: { metrics: HeldOutMetrics; trainEnd: number; samples: number }): Promise<number> {
    const version = Math.max(0, ...(await this.list(user))) + 1;
    const folder = join(this.folder(user), `v${version}`);
    await renameDurable(this.candidateFolder(user), folder);
    const pointer: CurrentPointer = { user, version, path: `v${version}`, since: new Date().toISOString(), metrics: promoted.metrics, train_end: promoted.trainEnd, samples: promoted.samples };
    await this.writePointer(pointer);
    this.pointers.set(user, pointer);
    await this.grounder.addAdapter(user, folder);
    return version;
  }

  /**
   * Serves an earlier version (or the base model: null) for the user: the version is loaded, then the pointer moves.
   * `promotion` finds the decision that promoted a version (its metrics and split go into the pointer). Call under
   * withUser.
   */
  async rollback(user: string, version: number | null, promotion: (version: number) => Decision | undefined): Promise<void> {
    let pointer: CurrentPointer;
    if (version === null) {
      pointer = { user, version: null, path: null, since: new Date().toISOString(), metrics: null, train_end: 0, samples: 0 };
    } else {
      if (!Number.isInteger(version) || version < 1) throw feedbackError('INVALID_ARGUMENT', 'version', `version must be a positive integer or null (the base model), got ${JSON.stringify(version)}`);
      const kept = await this.list(user);
      if (!kept.includes(version)) {
        throw Object.assign(feedbackError('INVALID_ARGUMENT', 'version', `user '${user}' has no version ${version} (${kept.length ? `versions: ${kept.join(', ')}` : 'none promoted'})`), { notFound: true });
      }
      const promoted = promotion(version);
      pointer = {
        user, version, path: `v${version}`, since: new Date().toISOString(), metrics: promoted?.candidate ?? null,
        train_end: promoted?.samples?.train ?? 0, samples: promoted?.samples?.total ?? 0,
      };
      // Loaded before the pointer moves, so a broken folder leaves everything as it was.
      await this.grounder.addAdapter(user, join(this.folder(user), `v${version}`));
    }
    await this.writePointer(pointer);
    if (version === null) this.grounder.removeAdapter(user);
    this.pointers.set(user, pointer);
  }

  /** current.json, written atomically. */
  private writePointer(pointer: CurrentPointer): Promise<void> {
    return writeFileDurable(join(this.folder(pointer.user), 'current.json'), `${JSON.stringify(pointer, null, 2)}\n`);
  }
}
