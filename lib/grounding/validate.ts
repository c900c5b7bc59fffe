// What an instruction and a screenshot must be before any pixel is decoded or any token reaches the engine. The
// Grounder checks every request with it, and the feedback store checks every tap with the same Grounder's checker
// before acknowledging it, so a tap the model could not be asked about is never stored (and never breaks a training
// job later).
//
// The image is judged from its header (sharp's metadata(): no pixel decoded): its format, its declared pixels and its
// aspect ratio. A 1 MB PNG can declare 16383x16383 pixels (2.5 GB decoded), a 200-byte SVG 16000x16000.
import { existsSync } from 'node:fs';
import sharp, { type Metadata } from 'sharp';
import type { QwenTokenizer } from '../processor/tokenizer.js';

/** 4096x4096: a 4K screen (3840x2160) or a tall phone screenshot (1440x3200) fit with room to spare. */
export const DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096;
/** smart_resize refuses a longer side over 200 times the shorter one (transformers' limit). */
export const MAX_ASPECT_RATIO = 200;
/** Formats read without a flag. SVG is not among them: its size is whatever it declares, its rendering is a program. */
export const IMAGE_FORMATS = ['png', 'jpeg', 'webp', 'gif', 'tiff', 'avif', 'heif'] as const;

export interface InputLimits {
  /** Pixels an image may declare (width x height); default 4096x4096. */
  maxImagePixels?: number;
  /** Accept SVG images (default false). */
  allowSvg?: boolean;
  /** Characters of an instruction (default 2000). */
  maxInstructionLength?: number;
}

export const DEFAULT_MAX_INSTRUCTION_LENGTH = 2000;

export type InputErrorCode = 'INVALID_IMAGE' | 'INVALID_ARGUMENT';

/** A rejected input: `param` names the field (image, instruction, referring). */
export type InputError = Error & { code: InputErrorCode; param: string };

export function inputError(code: InputErrorCode, param: string, message: string, cause?: unknown): InputError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code, param });
}

/** The added tokens' texts (<|image_pad|>, <|im_end|>, <think>, ...), once per tokenizer. */
const controlTokens = new WeakMap<QwenTokenizer, string[]>();

function controlTokensOf(tokenizer: QwenTokenizer | null): string[] {
  if (!tokenizer) return [];
  let tokens = controlTokens.get(tokenizer);
  if (!tokens) {
    tokens = tokenizer.vocabulary().added.map((id) => tokenizer.decode([id])).filter((t) => t !== '');
    controlTokens.set(tokenizer, tokens);
  }
  return tokens;
}

/** The checks of one model's inputs. */
export class InputChecker {
  readonly maxImagePixels: number;
  readonly allowSvg: boolean;
  readonly maxInstructionLength: number;

  /** Without a tokenizer, text is not checked for control tokens (a feedback store opened on its own). */
  constructor(private readonly tokenizer: QwenTokenizer | null, limits: InputLimits = {}) {
    this.maxImagePixels = limits.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS;
    this.allowSvg = limits.allowSvg ?? false;
    this.maxInstructionLength = limits.maxInstructionLength ?? DEFAULT_MAX_INSTRUCTION_LENGTH;
    controlTokensOf(tokenizer); // now, while loading: reading the vocabulary takes ~0.2 s of the event loop
    if (!Number.isInteger(this.maxImagePixels) || this.maxImagePixels < 1) throw inputError('INVALID_ARGUMENT', 'maxImagePixels', `maxImagePixels must be a positive integer, got ${this.maxImagePixels}`);
  }

  /**
   * Text that goes into the prompt (the instruction, a tap's referring): a string without NUL and without the
   * tokenizer's added tokens, which would be read as control tokens (an `<|image_pad|>` in the text would claim
   * image features the prompt does not have).
   */
  text(value: unknown, param: string, maxLength = this.maxInstructionLength): string {
    if (typeof value !== 'string' || value.trim() === '') throw inputError('INVALID_ARGUMENT', param, `${param} must be a non-empty string`);
    if (value.length > maxLength) throw inputError('INVALID_ARGUMENT', param, `the ${param} is ${value.length} characters, over the limit of ${maxLength}`);
    if (value.includes('\u0000')) throw inputError('INVALID_ARGUMENT', param, `the ${param} holds a NUL character`);
    const token = controlTokensOf(this.tokenizer).find((t) => value.includes(t));
    if (token !== undefined) throw inputError('INVALID_ARGUMENT', param, `the ${param} holds the model's control token '${token}'; send plain text`);
    return value;
  }

  /** A tap's instruction and referring text (null: none). */
  texts(instruction: unknown, referring: unknown): void {
    this.text(instruction, 'instruction');
    if (referring !== null) this.text(referring, 'referring');
  }

  /**
   * The image's format and its size as the processor will see it (EXIF orientation applied), from its header; throws
   * an InputError (param 'image') for an unknown or disallowed format, a declared size over maxImagePixels, or an
   * aspect ratio over 200.
   */
  async image(source: string | Uint8Array): Promise<{ format: string; width: number; height: number }> {
    // A path is the library caller's own file (the server passes bytes): naming it leaks nothing.
    if (typeof source === 'string' && !existsSync(source)) throw inputError('INVALID_IMAGE', 'image', `image not found: ${source}`);
    let meta: Metadata;
    try {
      meta = await sharp(source, { limitInputPixels: false }).metadata();
    } catch (error) {
      throw inputError('INVALID_IMAGE', 'image', `cannot decode image: ${(error as Error).message}`, error);
    }
    const format = meta.format === 'heif' && meta.compression === 'av1' ? 'avif' : String(meta.format);
    const allowed: readonly string[] = this.allowSvg ? [...IMAGE_FORMATS, 'svg'] : IMAGE_FORMATS;
    if (!allowed.includes(format)) {
      throw inputError('INVALID_IMAGE', 'image', `the image is ${format.toUpperCase()}; send ${IMAGE_FORMATS.map((f) => f.toUpperCase()).join(', ')}${format === 'svg' ? ' (SVG is off on this server)' : ''}`);
    }
    const { width, height } = meta;
    if (!width || !height) throw inputError('INVALID_IMAGE', 'image', 'the image declares no size');
    if (width * height > this.maxImagePixels) {
      throw inputError('INVALID_IMAGE', 'image', `the image declares ${width}x${height} = ${width * height} pixels, over the limit of ${this.maxImagePixels}`);
    }
    const ratio = Math.max(width, height) / Math.min(width, height);
    if (ratio > MAX_ASPECT_RATIO) {
      throw inputError('INVALID_IMAGE', 'image', `the image is ${width}x${height}: its aspect ratio ${ratio.toFixed(1)} is over ${MAX_ASPECT_RATIO}`);
    }
    // EXIF orientations 5-8 turn the image a quarter: the processor (autoOrient) sees it transposed.
    const turned = (meta.orientation ?? 1) >= 5;
    return { format, width: turned ? height : width, height: turned ? width : height };
  }
}

/** A request's checked inputs: the image's size in pixels, as ground() answers in and taps refer to. */
export interface CheckedInput {
  width: number;
  height: number;
}

/** Checks an image, its instruction and an optional referring text as the model would take them (Grounder.checkInput). */
export type InputCheck = (image: string | Uint8Array, instruction: string, referring: string | null) => Promise<CheckedInput>;
