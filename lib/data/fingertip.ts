// FingerTip-20K (Kaggle raw files) -> canonical gg-sample/1 dataset, per datasets.md §1.2-1.5 and §5:
//   <src>/<uid>/[<uid>/]<YYYYMMDD_HHMMSS>/{survey_result.json, action.jsonl, Screenshots*/{<ts>.jpg, tree_<ts>.xml}}
// One sample per click (long_click behind an option) whose screenshot exists and whose point lies inside it.
// Every skip is counted by reason in the report, so a conversion of the real data can be audited.
import { copyFile, lstat, mkdir, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../atomic.js';
import { isObject } from '../util/json.js';
import { compareUsers, writeDataset } from './manifest.js';
import type { DatasetInfo, Point, Sample } from './types.js';

export const CONVERTER_VERSION = 'convert-fingertip@0.1';

export type InstructionMode = 'goal' | 'referring';

export interface FingertipOptions {
  /** Also make samples from long_click actions. */
  longClick?: boolean;
  /** Copy screenshots into <out>/images instead of symlinking them. */
  copyImages?: boolean;
  /** 'goal': the episode's intentDescription (mode G, default); 'referring': 点击「content」 (mode R). */
  instruction?: InstructionMode;
}

export interface FingertipReport {
  source: string;
  out: string;
  options: Required<FingertipOptions>;
  users: number;
  episodes: number;
  episodes_complete: number;
  /** Skipped episodes by the first missing piece. */
  episodes_incomplete: Record<string, number>;
  action_lines: number;
  /** Lines that are not JSON, or not a one-key {"<ts>.jpg": "<action>"} object. */
  bad_json_lines: number;
  actions_by_type: Record<string, number>;
  samples: number;
  samples_by_type: Record<string, number>;
  /** Grounding actions (click / long_click) that produced no sample, by reason. */
  skipped_actions: Record<string, number>;
  samples_with_bbox: number;
  /** Episodes whose survey_result.user_id differs from the folder's user (the folder wins). */
  user_id_mismatches: number;
}

export interface FingertipResult {
  info: DatasetInfo;
  samples: Sample[];
  report: FingertipReport;
}

interface Survey {
  user_id?: unknown;
  time?: unknown;
  scenario?: unknown;
  app?: unknown;
  intentDescription?: unknown;
  intentClass?: unknown;
}

export interface ParsedAction {
  name: string;
  point: Point | null;
  content: string | null;
}

/** Parses a FingerTip action string such as `click(coordinates=(336, 1267), content='蓝色加号按钮')`. */
export function parseAction(text: string): ParsedAction | null {
  const name = /^\s*([A-Za-z_]+)\s*\(/.exec(text);
  if (!name) return null;
  const coords = /coordinates\s*=\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)/.exec(text);
  // Greedy to the last matching quote before the closing parenthesis, so quotes inside the text survive.
  const content = /content\s*=\s*(['"])([\s\S]*)\1\s*\)\s*$/.exec(text);
  return {
    name: name[1]!,
    point: coords ? { x: Number(coords[1]), y: Number(coords[2]) } : null,
    content: content ? content[2]!.replace(/\\(['"\\])/g, '$1') : null,
  };
}

export interface A11yNode {
  bounds: [number, number, number, number];
  clickable: boolean;
}

/** Every element with Android `bounds="[x1,y1][x2,y2]"` in an accessibility-tree XML (tag names vary by dumper). */
export function parseA11yNodes(xml: string): A11yNode[] {
  const nodes: A11yNode[] = [];
  for (const tag of xml.matchAll(/<[A-Za-z][\w.$:-]*\b([^>]*?)\/?>/g)) {
    const attrs = new Map<string, string>();
    for (const attr of tag[1]!.matchAll(/([\w:.-]+)\s*=\s*"([^"]*)"/g)) attrs.set(attr[1]!, attr[2]!);
    const bounds = /^\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]$/.exec(attrs.get('bounds')?.trim() ?? '');
    if (!bounds) continue;
    if (attrs.get('visible') === 'false' || attrs.get('visible-to-user') === 'false') continue;
    nodes.push({
      bounds: [Number(bounds[1]), Number(bounds[2]), Number(bounds[3]), Number(bounds[4])],
      clickable: attrs.get('clickable') === 'true' || attrs.get('long-clickable') === 'true',
    });
  }
  return nodes;
}

/**
 * The smallest clickable node containing the point, clipped to the image; null when none does. Non-clickable
 * containers are not used: the root always contains the point and would make a meaningless full-screen box.
 */
export function bboxForPoint(
  nodes: readonly A11yNode[],
  point: Point,
  width: number,
  height: number,
): [number, number, number, number] | null {
  let best: [number, number, number, number] | null = null;
  let bestArea = Infinity;
  for (const node of nodes) {
    if (!node.clickable) continue;
    const [x1, y1, x2, y2] = node.bounds;
    const box: [number, number, number, number] = [Math.max(0, x1), Math.max(0, y1), Math.min(width, x2), Math.min(height, y2)];
    if (box[2] <= box[0] || box[3] <= box[1]) continue;
    if (point.x < box[0] || point.x > box[2] || point.y < box[1] || point.y > box[3]) continue;
    const area = (box[2] - box[0]) * (box[3] - box[1]);
    if (area < bestArea) {
      best = box;
      bestArea = area;
    }
  }
  return best;
}

const IMAGE_EXT = /\.(jpe?g|png|webp)$/i;

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function subdirs(path: string): Promise<string[]> {
  const entries = await readdir(path, { withFileTypes: true });
  const dirs: string[] = [];
  for (const entry of entries) {
    if (entry.isDirectory() || (entry.isSymbolicLink() && (await isDir(join(path, entry.name))))) dirs.push(entry.name);
  }
  return dirs.sort();
}

const bump = (counts: Record<string, number>, key: string, by = 1) => {
  counts[key] = (counts[key] ?? 0) + by;
};

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

interface Episode {
  user: string;
  name: string;
  dir: string;
}

/** Episode folders of one user; the Kaggle copy nests <uid>/<uid>/, which is flattened here. */
async function userEpisodes(root: string, user: string): Promise<Episode[]> {
  const userDir = join(root, user);
  const episodes: Episode[] = [];
  for (const name of await subdirs(userDir)) {
    if (name === user) {
      for (const inner of await subdirs(join(userDir, name))) episodes.push({ user, name: inner, dir: join(userDir, name, inner) });
    } else {
      episodes.push({ user, name, dir: join(userDir, name) });
    }
  }
  return episodes;
}

interface ScreenIndex {
  images: Map<string, string>;
  xmls: Map<string, string>;
}

/** Screenshots* folders (matched by prefix), indexed by the numeric timestamp; "tree_" is stripped from XML names. */
async function indexScreens(episodeDir: string): Promise<ScreenIndex | null> {
  const folders = (await subdirs(episodeDir)).filter((name) => name.startsWith('Screenshots'));
  if (folders.length === 0) return null;
  const index: ScreenIndex = { images: new Map(), xmls: new Map() };
  for (const folder of folders) {
    for (const file of (await readdir(join(episodeDir, folder))).sort()) {
      const path = join(episodeDir, folder, file);
      if (IMAGE_EXT.test(file)) index.images.set(file.replace(IMAGE_EXT, ''), path);
      else if (/^tree_.+\.xml$/i.test(file)) index.xmls.set(file.slice('tree_'.length, -'.xml'.length), path);
    }
  }
  return index;
}

/** Converts a FingerTip tree in memory (no files written); see writeFingertipDataset for the on-disk dataset. */
export async function convertFingertip(src: string, out: string, options: FingertipOptions = {}): Promise<FingertipResult> {
  const opts: Required<FingertipOptions> = {
    longClick: options.longClick ?? false,
    copyImages: options.copyImages ?? false,
    instruction: options.instruction ?? 'goal',
  };
  const root = resolve(src);
  if (!(await isDir(root))) throw new Error(`FingerTip source ${src} is not a directory`);
  const report: FingertipReport = {
    source: root,
    out: resolve(out),
    options: opts,
    users: 0,
    episodes: 0,
    episodes_complete: 0,
    episodes_incomplete: {},
    action_lines: 0,
    bad_json_lines: 0,
    actions_by_type: {},
    samples: 0,
    samples_by_type: {},
    skipped_actions: {},
    samples_with_bbox: 0,
    user_id_mismatches: 0,
  };
  const grounded = new Set(opts.longClick ? ['click', 'long_click'] : ['click']);
  const samples: Sample[] = [];
  const sizes = new Map<string, { width: number; height: number } | null>();
  const users = new Set<string>();

  for (const user of (await subdirs(root)).sort(compareUsers)) {
    const episodes = await userEpisodes(root, user);
    if (episodes.length > 0) report.users++;
    for (const episode of episodes) {
      report.episodes++;
      const actionFile = join(episode.dir, 'action.jsonl');
      const surveyFile = join(episode.dir, 'survey_result.json');
      const screens = await indexScreens(episode.dir);
      const missing = !(await isFile(actionFile))
        ? 'missing_action_jsonl'
        : !(await isFile(surveyFile))
          ? 'missing_survey_result'
          : screens === null
            ? 'missing_screenshots_folder'
            : screens.images.size === 0
              ? 'no_screenshots'
              : screens.xmls.size === 0
                ? 'no_xml'
                : null;
      let survey: Survey | null = null;
      if (missing === null) {
        try {
          const parsed: unknown = JSON.parse(await readFile(surveyFile, 'utf8'));
          if (isObject(parsed)) survey = parsed as Survey;
        } catch {
          survey = null;
        }
      }
      if (missing !== null || survey === null || screens === null) {
        bump(report.episodes_incomplete, missing ?? 'bad_survey_result');
        continue;
      }
      report.episodes_complete++;
      if (survey.user_id !== undefined && String(survey.user_id) !== user) report.user_id_mismatches++;
      const context: Record<string, unknown> = {};
      const contextFields: Array<[string, unknown]> = [
        ['time', survey.time ?? episode.name],
        ['scenario', survey.scenario],
        ['app', survey.app],
        ['intent', survey.intentDescription],
        ['intent_class', survey.intentClass],
      ];
      for (const [key, value] of contextFields) if (text(value) !== undefined) context[key] = value;

      const history: string[] = [];
      const lines = (await readFile(actionFile, 'utf8')).split(/\r?\n/).filter((line) => line.trim() !== '');
      for (const [step, line] of lines.entries()) {
        report.action_lines++;
        let entry: [string, string] | null = null;
        try {
          const parsed: unknown = JSON.parse(line);
          if (isObject(parsed)) {
            const pairs = Object.entries(parsed);
            if (pairs.length === 1 && typeof pairs[0]![1] === 'string') entry = pairs[0] as [string, string];
          }
        } catch {
          entry = null;
        }
        if (entry === null) {
          report.bad_json_lines++;
          continue;
        }
        const [key, raw] = entry;
        const action = parseAction(raw);
        const name = action?.name ?? 'unparsed';
        bump(report.actions_by_type, name);
        const previous = [...history];
        history.push(raw);
        if (action === null || !grounded.has(name)) continue;

        const skip = (reason: string) => bump(report.skipped_actions, reason);
        if (action.point === null) {
          skip('no_coordinates');
          continue;
        }
        const ts = key.replace(IMAGE_EXT, '');
        const imagePath = screens.images.get(ts);
        if (imagePath === undefined) {
          skip('missing_screenshot');
          continue;
        }
        if (!sizes.has(imagePath)) {
          const meta = await sharp(imagePath).metadata().catch(() => null);
          sizes.set(imagePath, meta?.width && meta.height ? { width: meta.width, height: meta.height } : null);
        }
        const size = sizes.get(imagePath)!;
        if (size === null) {
          skip('unreadable_screenshot');
          continue;
        }
        const { x, y } = action.point;
        if (x < 0 || y < 0 || x >= size.width || y >= size.height) {
          skip('out_of_bounds');
          continue;
        }
        const instruction =
          opts.instruction === 'goal'
            ? text(survey.intentDescription)
            : action.content !== null && action.content !== ''
              ? `点击「${action.content}」`
              : undefined;
        if (instruction === undefined) {
          skip(opts.instruction === 'goal' ? 'missing_intent' : 'missing_content');
          continue;
        }
        const xmlPath = screens.xmls.get(ts);
        let bbox: [number, number, number, number] | null = null;
        if (xmlPath !== undefined) {
          bbox = bboxForPoint(parseA11yNodes(await readFile(xmlPath, 'utf8')), action.point, size.width, size.height);
        }
        const imageName = basename(imagePath);
        const meta: Record<string, unknown> = { raw_action: raw, src_image: relative(root, imagePath) };
        if (xmlPath !== undefined) meta.xml = relative(root, xmlPath);
        samples.push({
          id: `fingertip20k/${user}/${episode.name}/${String(step).padStart(4, '0')}`,
          source: 'fingertip20k',
          user,
          episode: episode.name,
          step,
          image: `images/${user}/${episode.name}/${imageName}`,
          width: size.width,
          height: size.height,
          instruction,
          referring: action.content,
          action_type: name,
          target: { x, y },
          bbox,
          bbox_source: bbox === null ? null : 'a11y',
          history: previous,
          context,
          meta,
        });
        users.add(user);
        bump(report.samples_by_type, name);
        if (bbox !== null) report.samples_with_bbox++;
      }
    }
  }
  samples.sort(
    (a, b) => compareUsers(a.user, b.user) || (a.episode < b.episode ? -1 : a.episode > b.episode ? 1 : 0) || a.step - b.step,
  );
  report.samples = samples.length;
  const info: DatasetInfo = {
    schema: 'gg-sample/1',
    name: opts.longClick ? 'fingertip20k-click-longclick' : 'fingertip20k-click',
    source: 'fingertip20k',
    created_by: CONVERTER_VERSION,
    coord_space: 'pixel',
    users: [...users].sort(compareUsers),
    counts: { samples: samples.length, users: users.size, episodes: report.episodes_complete },
    notes: `instruction=${opts.instruction}; one sample per ${[...grounded].join('/')} action; history = earlier action strings of the episode`,
  };
  return { info, samples, report };
}

/** Links (or copies) each sample's screenshot to <out>/<sample.image>, replacing what a previous run left there. */
async function placeImages(root: string, out: string, samples: readonly Sample[], copy: boolean): Promise<void> {
  const done = new Set<string>();
  for (const sample of samples) {
    if (done.has(sample.image)) continue;
    done.add(sample.image);
    const from = join(root, sample.meta!.src_image as string);
    const to = join(out, sample.image);
    await mkdir(dirname(to), { recursive: true });
    if (await lstat(to).then(() => true, () => false)) await rm(to, { force: true });
    if (copy) await copyFile(from, to);
    else await symlink(from, to);
  }
}

/** Converts and writes <out>/{images/, manifest.jsonl, dataset.json, report.json}; returns the report. */
export async function writeFingertipDataset(src: string, out: string, options: FingertipOptions = {}): Promise<FingertipReport> {
  const { info, samples, report } = await convertFingertip(src, out, options);
  await placeImages(report.source, report.out, samples, report.options.copyImages);
  await writeDataset(out, info, samples);
  await writeFileAtomic(join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}
