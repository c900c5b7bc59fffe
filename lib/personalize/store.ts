// The feedback store: each user's taps as a pigg dataset on disk (gg-sample/1, lib/data/manifest.ts), one folder
// per user, appended to durably.
//
//   <root>/<user>/dataset.json       written once, when the user's first sample arrives
//   <root>/<user>/manifest.jsonl     one Sample per line, in arrival order
//   <root>/<user>/images/000000.png  the screenshot of sample 0 (its own format: png, jpg, webp, ...)
//
// An append writes the image first (temp file, fsync, rename, fsync of the folder), then the manifest line with one
// write and an fsync; only then is it acknowledged. A kill -9 at any moment loses at most the sample in flight: an
// image without its line is overwritten by the next sample, and a torn last line (no newline) is cut off when the
// store is opened. Each user's folder is a dataset `pigg eval --data` reads as it is.
//
// One process at a time owns a store (appends of one process are ordered per user; two processes would race).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { INFO_FILE, MANIFEST_FILE, readManifest, sampleToJsonLine, validateSample } from '../data/manifest.js';
import type { DatasetInfo, Sample } from '../data/types.js';
import { decodeImage } from '../processor/image.js';
import { DEFAULT_MAX_INSTRUCTION_LENGTH, InputChecker, type InputCheck } from '../grounding/validate.js';
import { appendLineDurable, mkdirDurable, removeTempFiles, repairTail, writeFileDurable } from './durable.js';

/** One tap a user made (or confirmed) on a screenshot: what the model should have answered. */
export interface FeedbackInput {
  /** The user's id: letters, digits and _ . @ - (at most 64, starting with a letter or digit). */
  user: string;
  /** The screenshot: a file path or the encoded image's bytes (PNG, JPEG, WebP, ...). */
  image: string | Uint8Array;
  instruction: string;
  /** Where the user tapped, in pixels of the image (as ground() answers), 0 <= x < width, 0 <= y < height. */
  tap: { x: number; y: number };
  /** The element tapped, when known (trained into PIGG's referring block); default none. */
  referring?: string | null;
}

export interface StoredFeedback {
  sample: Sample;
  /** The sample's position in the user's manifest (0-based). */
  index: number;
  /** The user's samples after this one. */
  count: number;
}

export type FeedbackErrorCode = 'INVALID_ARGUMENT' | 'INVALID_IMAGE';

/** A rejected feedback request: `param` names the field (user, image, instruction, tap, tap.x, tap.y, referring). */
export type FeedbackError = Error & { code: FeedbackErrorCode; param: string };

export function feedbackError(code: FeedbackErrorCode, param: string, message: string, cause?: unknown): FeedbackError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code, param });
}

export const USER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
export { DEFAULT_MAX_INSTRUCTION_LENGTH };
const MAX_REFERRING_LENGTH = 200;

/** Checks a user id (it names a folder and an adapter); throws a FeedbackError naming `param`. */
export function checkUser(user: unknown, param = 'user'): string {
  if (typeof user !== 'string' || user === '') throw feedbackError('INVALID_ARGUMENT', param, `${param} must be a non-empty string (the user's id)`);
  if (!USER_PATTERN.test(user)) {
    throw feedbackError('INVALID_ARGUMENT', param, `${param} '${user.length > 80 ? `${user.slice(0, 80)}…` : user}' may hold only letters, digits and _ . @ - (at most 64, starting with a letter or digit)`);
  }
  return user;
}

const IMAGE_EXTENSIONS: Record<string, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', tiff: 'tif', avif: 'avif', heif: 'heic' };

/** The format of encoded image bytes from their magic numbers (the file's extension); null when unknown. */
function imageExtension(bytes: Uint8Array): string | null {
  const starts = (...magic: number[]) => magic.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return IMAGE_EXTENSIONS.png!;
  if (starts(0xff, 0xd8, 0xff)) return IMAGE_EXTENSIONS.jpeg!;
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) return IMAGE_EXTENSIONS.webp!;
  if (starts(0x47, 0x49, 0x46, 0x38)) return IMAGE_EXTENSIONS.gif!;
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return IMAGE_EXTENSIONS.tiff!;
  if (bytes[4] === 0x66 && bytes[5] === 0x74 && bytes[6] === 0x79 && bytes[7] === 0x70) {
    const brand = String.fromCharCode(...bytes.subarray(8, 12));
    return brand.startsWith('avi') ? IMAGE_EXTENSIONS.avif! : IMAGE_EXTENSIONS.heif!;
  }
  return null;
}

interface UserState {
  samples: Sample[];
  /** Appends of this user run one after another. */
  chain: Promise<unknown>;
}

export interface OpenedStore {
  store: FeedbackStore;
  /** Per user: bytes of a torn last line cut off while opening (only users that had one). */
  repaired: Record<string, number>;
}

export class FeedbackStore {
  private readonly users = new Map<string, UserState>();

  private constructor(readonly root: string, private readonly checkInput: InputCheck) {}

  /**
   * Opens (or creates) a store: every user's manifest is read and validated, a torn last line cut off, temp files
   * of killed writes removed.
   */
  static async open(root: string, options: { maxInstructionLength?: number; check?: InputCheck } = {}): Promise<OpenedStore> {
    const store = new FeedbackStore(root, options.check ?? decodingCheck(options.maxInstructionLength ?? DEFAULT_MAX_INSTRUCTION_LENGTH));
    await mkdirDurable(root);
    const repaired: Record<string, number> = {};
    const entries = await readdir(root, { withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isDirectory() || !USER_PATTERN.test(entry.name)) continue;
      const dir = join(root, entry.name);
      const manifest = join(dir, MANIFEST_FILE);
      await removeTempFiles(dir);
      await removeTempFiles(join(dir, 'images'));
      const cut = await repairTail(manifest);
      if (cut > 0) repaired[entry.name] = cut;
      const samples = existsSync(manifest) ? await readManifest(manifest) : [];
      samples.forEach((sample, i) => {
        if (sample.user !== entry.name) throw new Error(`${manifest}:${i + 1}: sample of user '${sample.user}' in the folder of user '${entry.name}'`);
      });
      store.users.set(entry.name, { samples, chain: Promise.resolve() });
    }
    return { store, repaired };
  }

  /** Users with a folder (those with at least one sample, and any whose first append was cut short). */
  userIds(): string[] {
    return [...this.users.keys()].filter((user) => this.users.get(user)!.samples.length > 0).sort();
  }

  has(user: string): boolean {
    return (this.users.get(user)?.samples.length ?? 0) > 0;
  }

  /** The user's dataset folder (a gg-sample/1 dataset once the first sample is in). */
  userDir(user: string): string {
    return join(this.root, checkUser(user));
  }

  count(user: string): number {
    return this.users.get(user)?.samples.length ?? 0;
  }

  /** The user's samples in arrival order (a copy; the first `count` if given). */
  samples(user: string, count?: number): Sample[] {
    const all = this.users.get(user)?.samples ?? [];
    return all.slice(0, count ?? all.length);
  }

  /** Checks the request, then stores it durably; resolves once the sample is on disk. */
  async append(input: FeedbackInput): Promise<StoredFeedback> {
    const user = checkUser((input as Partial<FeedbackInput> | null)?.user);
    // Checked (the image decoded) right away, in parallel with other requests; written in call order per user.
    const checked = this.check(input);
    checked.catch(() => {});
    let state = this.users.get(user);
    if (!state) this.users.set(user, (state = { samples: [], chain: Promise.resolve() }));
    const run = state.chain.then(async () => this.write(await checked, state!));
    state.chain = run.catch(() => {});
    return run;
  }

  private async check(input: FeedbackInput): Promise<{ user: string; bytes: Uint8Array; ext: string; width: number; height: number; instruction: string; tap: { x: number; y: number }; referring: string | null }> {
    if (typeof input !== 'object' || input === null) throw feedbackError('INVALID_ARGUMENT', 'feedback', 'feedback must be an object {user, image, instruction, tap: {x, y}}');
    const user = checkUser(input.user);
    const { instruction, tap } = input;
    if (typeof instruction !== 'string' || instruction.trim() === '') throw feedbackError('INVALID_ARGUMENT', 'instruction', 'instruction must be a non-empty string');
    const referring = input.referring ?? null;
    if (referring !== null && (typeof referring !== 'string' || referring.trim() === '' || referring.length > MAX_REFERRING_LENGTH || /[\n`]/.test(referring))) {
      throw feedbackError('INVALID_ARGUMENT', 'referring', `referring must be null or a non-empty string of at most ${MAX_REFERRING_LENGTH} characters without newlines or backticks`);
    }
    if (typeof tap !== 'object' || tap === null || Array.isArray(tap)) throw feedbackError('INVALID_ARGUMENT', 'tap', 'tap must be an object {x, y} in pixels of the image');
    for (const axis of ['x', 'y'] as const) {
      const v = tap[axis];
      if (typeof v !== 'number' || !Number.isFinite(v)) throw feedbackError('INVALID_ARGUMENT', `tap.${axis}`, `tap.${axis} must be a finite number (pixels), got ${JSON.stringify(v) ?? String(v)}`);
    }

    let bytes: Uint8Array;
    const { image } = input;
    if (typeof image === 'string') {
      if (image === '') throw feedbackError('INVALID_IMAGE', 'image', 'the image is empty');
      try {
        bytes = await readFile(image);
      } catch (error) {
        throw feedbackError('INVALID_IMAGE', 'image', `cannot read the image file ${image}: ${(error as Error).message}`, error);
      }
    } else if (image instanceof Uint8Array) {
      bytes = image;
    } else {
      throw feedbackError('INVALID_ARGUMENT', 'image', 'image must be a file path or the bytes of an encoded image (Buffer/Uint8Array)');
    }
    if (bytes.byteLength === 0) throw feedbackError('INVALID_IMAGE', 'image', 'the image is empty');
    const ext = imageExtension(bytes);
    if (ext === null) throw feedbackError('INVALID_IMAGE', 'image', 'the image is not PNG, JPEG, WebP, GIF, TIFF, AVIF or HEIF (unknown leading bytes)');
    // Checked and decoded as inference takes it (EXIF orientation applied), so width and height are the pixels taps
    // refer to, and a tap stored never fails training on its inputs.
    let width: number;
    let height: number;
    try {
      ({ width, height } = await this.checkInput(bytes, instruction, referring));
    } catch (error) {
      if (typeof (error as Partial<FeedbackError>).param === 'string') throw error;
      throw feedbackError('INVALID_IMAGE', 'image', (error as Error).message, error);
    }
    if (tap.x < 0 || tap.x >= width) throw feedbackError('INVALID_ARGUMENT', 'tap.x', `tap.x ${tap.x} is outside the image: its width is ${width} pixels (0 <= x < ${width})`);
    if (tap.y < 0 || tap.y >= height) throw feedbackError('INVALID_ARGUMENT', 'tap.y', `tap.y ${tap.y} is outside the image: its height is ${height} pixels (0 <= y < ${height})`);
    return { user, bytes, ext, width, height, instruction, tap: { x: tap.x, y: tap.y }, referring };
  }

  private async write(input: Awaited<ReturnType<FeedbackStore['check']>>, state: UserState): Promise<StoredFeedback> {
    const dir = join(this.root, input.user);
    const manifest = join(dir, MANIFEST_FILE);
    if (!existsSync(join(dir, INFO_FILE))) {
      const info: DatasetInfo = {
        schema: 'gg-sample/1', name: `feedback-${input.user}`, source: 'feedback', created_by: 'pigg feedback', coord_space: 'pixel',
        users: [input.user], counts: {},
        notes: 'Taps users sent as feedback, appended in arrival order; manifest.jsonl is the record (counts are not kept here).',
      };
      await writeFileDurable(join(dir, INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
    }
    const index = state.samples.length;
    const local = String(index).padStart(6, '0');
    const image = `images/${local}.${input.ext}`;
    await writeFileDurable(join(dir, image), input.bytes);
    const sample: Sample = {
      id: `feedback/${input.user}/${local}`,
      source: 'feedback',
      user: input.user,
      episode: local,
      step: 0,
      image,
      width: input.width,
      height: input.height,
      instruction: input.instruction,
      referring: input.referring,
      action_type: 'click',
      target: input.tap,
      meta: { received: new Date().toISOString(), image_sha256: createHash('sha256').update(input.bytes).digest('hex') },
    };
    validateSample(sample, `${manifest}:${index + 1}`);
    await appendLineDurable(manifest, sampleToJsonLine(sample));
    state.samples.push(sample);
    return { sample, index, count: state.samples.length };
  }

  /** Bytes on disk of a user's manifest (for tests and status). */
  async manifestBytes(user: string): Promise<number> {
    return stat(join(this.root, checkUser(user), MANIFEST_FILE)).then((s) => s.size, () => 0);
  }
}

/** The check of a store opened without a model: the shared header and text checks, then the image decoded. */
function decodingCheck(maxInstructionLength: number): InputCheck {
  const checker = new InputChecker(null, { maxInstructionLength });
  return async (image, instruction, referring) => {
    checker.texts(instruction, referring);
    await checker.image(image);
    const { width, height } = await decodeImage(image);
    return { width, height };
  };
}
