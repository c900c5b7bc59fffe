// Writing a synthetic dataset: the samples through the dataset writer every converter uses (manifest.ts), the
// PNGs rasterised from their SVG, all in a temporary sibling folder that then replaces the output folder.
import { mkdir, readdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { writeFolderAtomic } from '../../atomic.js';
import { writeDataset } from '../manifest.js';
import type { DatasetInfo, Sample } from '../types.js';
import { checkInt, resolveSynthConfig, type SynthOptions } from './config.js';
import { P_PREF, synthSamples, type SynthKind } from './samples.js';

const SYNTH_VERSION = 'synthphone@1.0.0';

export interface WriteSynthOptions extends SynthOptions {
  /** Rasterise images/<user>/<index>.png (default true). */
  images?: boolean;
  /** Parallel rasterisations (default: available parallelism). */
  concurrency?: number;
  /** Replace a non-empty output directory. */
  force?: boolean;
}

export interface SynthDatasetInfo extends DatasetInfo {
  synth: {
    version: string;
    seed: string;
    width: number;
    height: number;
    samples_per_user: { min: number; max: number };
    personal: string[];
    global: string[];
    p_pref: number;
    images: boolean;
  };
}

async function isNonEmptyDir(dir: string): Promise<boolean | undefined> {
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) throw new Error(`output path ${dir} exists and is not a directory`);
    return (await readdir(dir)).length > 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function runPool(count: number, concurrency: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/**
 * Writes the dataset to `out` (dataset.json, manifest.jsonl, images/). Everything is written into a temporary
 * sibling directory first and renamed into place, so `out` never holds a partial dataset.
 */
export async function writeSynthDataset(out: string, options: WriteSynthOptions = {}): Promise<SynthDatasetInfo> {
  const config = resolveSynthConfig(options);
  const concurrency = options.concurrency ?? os.availableParallelism();
  checkInt('concurrency', concurrency, 1);
  const images = options.images ?? true;
  const target = path.resolve(out);
  const existing = await isNonEmptyDir(target);
  if (existing && !options.force) throw new Error(`output directory ${out} is not empty (force replaces it)`);

  const samples: Sample[] = [];
  const svgs: string[] = [];
  const counts: Record<string, number> = { samples: 0, explicit: 0, intent: 0, icon_only: 0 };
  for (const { sample, svg } of synthSamples(config)) {
    samples.push(sample);
    svgs.push(svg);
    counts.samples++;
    counts[sample.meta!.kind as SynthKind]++;
  }
  const info: SynthDatasetInfo = {
    schema: 'gg-sample/1',
    name: 'synthphone',
    source: 'synthetic',
    created_by: SYNTH_VERSION,
    coord_space: 'pixel',
    users: config.users,
    counts,
    notes: 'Deterministic synthetic phone screens (datasets.md §6); SVG text and manifest are byte-stable, PNG bytes depend on fonts.',
    synth: {
      version: SYNTH_VERSION,
      seed: config.seed,
      width: config.width,
      height: config.height,
      samples_per_user: config.samplesPerUser,
      personal: config.personal,
      global: config.global,
      p_pref: P_PREF,
      images,
    },
  };
  await writeFolderAtomic(target, async (tmp) => {
    await writeDataset(tmp, info, samples);
    if (images) {
      for (const user of config.users) await mkdir(path.join(tmp, 'images', user), { recursive: true });
      await runPool(svgs.length, concurrency, async (i) => {
        await sharp(Buffer.from(svgs[i]!)).png().toFile(path.join(tmp, samples[i]!.image));
      });
    }
  });
  return info;
}
