// `pigg serve` as a library call: load a Grounder (its batch stats wired into the server's metrics), add every
// adapter folder found under `adapters`, and start the HTTP server.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Grounder, type GrounderOptions } from '../grounding/grounder.js';
import { Personalizer, type PersonalizerOptions } from '../personalize/personalizer.js';
import { defaultImageWorkers } from '../processor/image-pool.js';
import { ServeMetrics } from './metrics.js';
import { startServer, type RunningServer, type ServerOptions } from './server.js';

export interface ServeOptions extends Omit<ServerOptions, 'grounder' | 'metrics' | 'device'> {
  /** The model folder. */
  model: string;
  /** A folder whose subfolders holding adapter_config.json are added as adapters named after the subfolder. */
  adapters?: string;
  /** Grounder and engine options (device, dtype, style, constrain, maxBatch, maxAdapterBytes, image, ...). */
  grounder?: Omit<GrounderOptions, 'onBatch'>;
  /** Called with each adapter added at start. */
  onAdapter?: (name: string, path: string) => void;
  /** Learn from feedback (lib/personalize): the feedback folder and the Personalizer's settings. */
  feedback?: Omit<PersonalizerOptions, 'grounder'>;
}

export interface Serving extends RunningServer {
  grounder: Grounder;
  /** With `feedback`: the Personalizer learning from it. */
  personalizer: Personalizer | null;
  /** Drains and closes the server, then disposes the Grounder. */
  stop(): Promise<void>;
}

/** Adapter folders under `dir`: every subfolder holding adapter_config.json, by folder name (sorted). */
export function adapterFolders(dir: string): Array<{ name: string; path: string }> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`--adapters ${dir} is not a folder`);
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(dir, entry.name, 'adapter_config.json')))
    .map((entry) => ({ name: entry.name, path: join(dir, entry.name) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export async function serve(options: ServeOptions): Promise<Serving> {
  const { model, adapters, grounder: grounderOptions, onAdapter, feedback, ...server } = options;
  const folders = adapters === undefined ? [] : adapterFolders(adapters);
  const metrics = new ServeMetrics();
  // At least one image worker: decoding and resizing a screenshot on the event loop would stall /health and every
  // other request for as long as it takes.
  const imageWorkers = grounderOptions?.imageWorkers ?? Math.max(1, defaultImageWorkers());
  const grounder = await Grounder.load(model, { ...grounderOptions, imageWorkers, onBatch: metrics.onBatch });
  let personalizer: Personalizer | null = null;
  try {
    for (const { name, path } of folders) {
      if (name === grounder.modelName) throw new Error(`the adapter folder ${path} has the base model's name '${name}'; rename it`);
      await grounder.addAdapter(name, path).catch((error: Error) => {
        throw new Error(`cannot load the adapter ${path}: ${error.message}`);
      });
      onAdapter?.(name, path);
    }
    // After the --adapters folders: a feedback user named like one of them is an error (one namespace).
    personalizer = feedback ? await Personalizer.open({ ...feedback, grounder }) : null;
    // The --adapters folder is where POST /v1/adapters may load from too, beside the roots given.
    const adapterRoots = [...(adapters === undefined ? [] : [adapters]), ...(server.adapterRoots ?? [])];
    const running = await startServer({ ...server, adapterRoots, grounder, metrics, personalizer: personalizer ?? undefined });
    let stopped: Promise<void> | null = null;
    return Object.assign(running, {
      grounder,
      personalizer,
      stop: () => (stopped ??= (async () => {
        await running.close();
        await personalizer?.close();
        await grounder[Symbol.asyncDispose]();
      })()),
    });
  } catch (error) {
    await personalizer?.close();
    await grounder[Symbol.asyncDispose]();
    throw error;
  }
}
