// Grounder: one screenshot and one instruction in, a tap point out, in one call. It owns the five ideas a caller
// would otherwise juggle (answer style, the 'generate' prompt, host tensors, special-token decoding, the 0-1000
// grid) and batches concurrent calls, also for different users' adapters, into one generate call.
//
//   const grounder = await Grounder.load(dir, { device: 'cuda' });
//   const tap = await grounder.ground('screen.png', 'Open Wi-Fi settings');   // { x, y } in the image's pixels
//
// predict() and `pigg eval` run on groundSamples(), the same batch path, so there is one inference path.
//
// Over 450 lines because the queue, the running batch, adapter pins and disposal are one object's state; batching,
// grammars, validation and token bytes are already files of their own (batcher.ts, grammar.ts, validate.ts).
import { setMaxListeners } from 'node:events';
import { basename } from 'node:path';
import type { Sample } from '../data/types.js';
import { fromGrid } from '../data/metrics.js';
import { buildInstructionPrompt, PARSERS, readAnswer, type AnswerStyle, type ParserName } from '../data/parse.js';
import { engineDefaults, Qwen3VL, type AdapterInfo, type GenerateOptions, type GenerateResult, type GrammarHandle, type GrammarTables, type VocabularyBytes, type LoadCallOptions, type NamedTensors } from '../engine/model.js';
import { checkSampling, type SamplingOptions } from '../engine/sampling.js';
import { PIGG_PIXELS, processImage, type ImageProcessorOptions } from '../processor/image.js';
import { ImagePool, type ImageProcessor } from '../processor/image-pool.js';
import { collate, encodeSample, toHostTensors, type EncodedSample } from '../processor/sample.js';
import { QwenTokenizer } from '../processor/tokenizer.js';
import { sampleSpec } from '../processor/inputs.js';
import { prefetched } from '../util/prefetch.js';
import { abortError, Batcher, type BatchRow } from './batcher.js';
import { answerGrammar, tokenBytes, type ConstrainStyle } from './grammar.js';
import { InputChecker, type CheckedInput, type InputLimits } from './validate.js';

export const DEFAULT_MAX_BATCH = 8;

/** A grammar, 'auto' (the prompt style's) or 'none'. */
export type ConstrainOption = ConstrainStyle | 'auto';

export interface GrounderSettings {
  /** Prompt and answer style: PIGG's referring + grounding blocks (default) or Qwen's JSON point. */
  style?: AnswerStyle;
  /**
   * Constrained greedy decoding: 'auto' (default) = the grammar of `style`, so every answer parses; 'pigg',
   * 'qwen-json' or 'point' (a bare `(x, y)`) name a grammar; 'none' decodes freely, as PIGG does.
   */
  constrain?: ConstrainOption;
  /**
   * How answers are read: 'robust' (default; JSON points, click(), boxes to their centre, clamped to 0-1000) or
   * 'pigg', PIGG's parse_inference exactly (pigg eval's default, so PIGG's numbers reproduce).
   */
  parser?: ParserName;
  /**
   * Sampling (temperature, top-p, top-k, repetition penalty, seed) instead of greedy decoding, for every request
   * that does not bring its own; default null: greedy. A grammar, when on, still decides which tokens are allowed.
   */
  sampling?: SamplingOptions | null;
  /** Pixel limits and resampler; default PIGG's (max_pixels 1280*28*28). */
  image?: ImageProcessorOptions;
  /** Generation budget per request (default: the engine's generate default, PIGG's budget). */
  maxNewTokens?: number;
  /** Concurrent ground() calls join one generate call, up to this many rows (default 8). */
  maxBatch?: number;
  /** Where images are decoded and resized: an ImagePool's process to share one; default a pool of imageWorkers. */
  images?: ImageProcessor;
  /** Worker threads of the Grounder's own image pool when `images` is not given (default defaultImageWorkers()). */
  imageWorkers?: number;
  /** Called after every generate call, for metrics. */
  onBatch?: (stats: BatchStats) => void;
  /**
   * Device bytes of adapters kept on the device, least recently used dropped first (the engine's LRU,
   * Qwen3VL.setAdapterBudget); the others stay in host memory. Default: the engine's (no limit).
   */
  maxAdapterBytes?: number;
  /** What a request's image and instruction may be (declared pixels, SVG, instruction length): lib/grounding/validate.ts. */
  input?: InputLimits;
}

/** Engine load options (device, dtype, threads), `signal` (aborts the load) and `onProgress` (0..1 while loading). */
export interface GrounderOptions extends LoadCallOptions, GrounderSettings {}

export interface BatchStats {
  /** Rows of the generate call. */
  size: number;
  /** Distinct adapters among the rows (the base model not counted). */
  adapters: number;
  /** Per row: seconds from ground() to the start of the batch (image decoding and tokenizing included). */
  queueSeconds: number[];
  /** The engine's own split of the call, device-synchronized. */
  visionSeconds: number;
  prefillSeconds: number;
  decodeSeconds: number;
  /** Wall time of the generate call. */
  generateSeconds: number;
  /** Generated tokens over all rows (each row up to and including its end token). */
  tokens: number;
}

export interface GroundOptions {
  /** The adapter (added with addAdapter) that answers for this user; default the base model. */
  user?: string | null;
  /** Aborts this request only: dropped while queued, its row stopped once running. Rejects with an AbortError. */
  signal?: AbortSignal;
  /** Generation budget of this request (default the Grounder's). */
  maxNewTokens?: number;
  /** This request's sampling (null: greedy); default the Grounder's. */
  sampling?: SamplingOptions | null;
  /**
   * Streaming: called with each new piece of the answer's text while it is decoded (held back at an incomplete
   * UTF-8 character). The pieces joined are the result's `text`, exactly; the last may come just before the result.
   */
  onText?: (delta: string) => void;
}

export interface GroundResult {
  /** The point in pixels of the original image (PIGG scores an unparsed answer as grid (0, 0), and so is x, y then). */
  x: number;
  y: number;
  /** The point on the model's relative 0-1000 grid. */
  grid: { x: number; y: number };
  /** The element the model says it grounded, when the answer names one. */
  referring: string | null;
  /** The answer as decoded (special tokens skipped). */
  text: string;
  /** Generated tokens, the end token included. */
  tokens: number;
  /** Tokens of the prompt (chat template, instruction and image pads). */
  promptTokens: number;
  /** 'stop': the answer ended with an end token; 'length': it ran into the token budget. */
  finishReason: 'stop' | 'length';
  /** Seconds from the call to the answer. */
  seconds: number;
  adapter: string | null;
  /** False when the answer held no point. */
  parsed: boolean;
}

export interface GroundSamplesOptions {
  /** Samples per generate call (default maxBatch); batches are the consecutive chunks of `samples`. */
  batchSize?: number;
  user?: string | null;
  maxNewTokens?: number;
  /** Sampling (default the Grounder's); sample i is seeded with seed + i, so its answer does not depend on batching. */
  sampling?: SamplingOptions | null;
  signal?: AbortSignal;
  /** Called after each batch with the number of samples done. */
  onProgress?: (done: number, total: number) => void;
}

export type GrounderErrorCode = 'UNKNOWN_ADAPTER' | 'INVALID_IMAGE' | 'INVALID_ARGUMENT' | 'GROUNDER_DISPOSED';

export type GrounderError = Error & { code: GrounderErrorCode };

function grounderError(code: GrounderErrorCode, message: string, cause?: unknown): GrounderError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/** One request, ready for the engine. */
interface Prepared {
  encoded: EncodedSample;
  width: number;
  height: number;
  adapter: string | null;
  maxNewTokens: number;
  sampling: Required<SamplingOptions> | null;
  /** performance.now() at the call. */
  called: number;
  onText?: (delta: string) => void;
}

/** One row's streamed text: tokens from generate's onStep, decoded as they come. */
class TextStream {
  private readonly ids: number[] = [];
  private sent = '';
  private done = false;

  constructor(private readonly tokenizer: QwenTokenizer, private readonly eosIds: ReadonlySet<number>, private readonly limit: number,
    private readonly emit: (delta: string) => void) {}

  push(token: number): void {
    if (this.done) return;
    this.ids.push(token);
    if (this.eosIds.has(token) || this.ids.length >= this.limit) this.done = true;
    const text = this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
    if (!text.endsWith('\uFFFD')) this.send(text);
  }

  /** The final answer: what was not streamed yet; later steps are ignored. */
  finish(text: string): void {
    this.done = true;
    this.send(text);
  }

  /** Aborted or failed: nothing more is streamed. */
  close(): void {
    this.done = true;
  }

  private send(text: string): void {
    if (text.length <= this.sent.length || !text.startsWith(this.sent)) return;
    const delta = text.slice(this.sent.length);
    this.sent = text;
    try {
      this.emit(delta);
    } catch (error) {
      process.emitWarning(`Grounder onText threw: ${(error as Error).message}`);
    }
  }
}

// The answer grammars (lib/grounding/grammar.ts).
type GrammarStyle = Exclude<ConstrainStyle, 'none'>;
/** answerGrammar's default bound on the referring text / label. */
const REFERRING_BYTES = 96;
/** Shorter bounds (for small token budgets) are rounded down to a multiple of this, so few grammars are compiled. */
const REFERRING_STEP = 8;

/** The most bytes an answer of a grammar can have; Infinity when it has a loop. */
export function longestAnswerBytes(grammar: GrammarTables): number {
  const memo = new Int32Array(grammar.states).fill(-2); // -2 unseen, -3 on the path
  const longest = (state: number): number => {
    const seen = memo[state]!;
    if (seen === -3) return Number.POSITIVE_INFINITY;
    if (seen !== -2) return seen;
    memo[state] = -3;
    let best = grammar.accepting[state] ? 0 : Number.NEGATIVE_INFINITY;
    for (let byte = 0; byte < 256; byte++) {
      const next = grammar.transitions[state * 256 + byte]!;
      if (next >= 0) best = Math.max(best, 1 + longest(next));
    }
    if (!Number.isFinite(best)) return best;
    memo[state] = best;
    return best;
  };
  return longest(grammar.start);
}

/**
 * One answer grammar compiled into one model, per token budget: every allowed token holds at least one byte, so an
 * answer of at most B bytes ends (with its end token) within B + 1 tokens. Where the budget is smaller than the full
 * grammar's longest answer, the referring text is bounded tighter, so the answer still completes and parses.
 */
class AnswerGrammars {
  private readonly handles = new Map<number, { handle: GrammarHandle; longest: number }>();
  /** The budget the smallest grammar needs. */
  readonly minBudget: number;

  constructor(private readonly model: Qwen3VL, private readonly vocabulary: VocabularyBytes,
    private readonly eosIds: readonly number[], readonly style: GrammarStyle) {
    this.minBudget = this.compiled(0).longest + 1;
  }

  /** The grammar for rows of this token budget (one handle per referring bound, cached). */
  forBudget(budget: number): GrammarHandle {
    const full = this.compiled(REFERRING_BYTES);
    if (full.longest + 1 <= budget) return full.handle;
    if (budget < this.minBudget) {
      throw grounderError('INVALID_ARGUMENT',
        `maxNewTokens ${budget} cannot hold a complete '${this.style}' answer (up to ${this.minBudget - 1} bytes and the end token): use at least ${this.minBudget}, or constrain 'none'`);
    }
    // The referring bound that fits: the bytes an answer has beyond its referring, then what is left of the budget
    // (0: no referring at all).
    const overhead = this.compiled(1).longest - 1;
    let bound = Math.max(0, Math.floor((budget - 1 - overhead) / REFERRING_STEP) * REFERRING_STEP);
    while (bound > 0 && this.compiled(bound).longest + 1 > budget) bound = Math.max(0, bound - REFERRING_STEP);
    return this.compiled(bound).handle;
  }

  private compiled(maxReferringBytes: number): { handle: GrammarHandle; longest: number } {
    let entry = this.handles.get(maxReferringBytes);
    if (!entry) {
      const tables = answerGrammar(this.style, { maxReferringBytes });
      const longest = longestAnswerBytes(tables);
      if (!Number.isFinite(longest)) throw new Error(`the '${this.style}' answer grammar has no longest answer (it loops)`);
      entry = { handle: this.model.createGrammar(tables, this.vocabulary, this.eosIds), longest };
      this.handles.set(maxReferringBytes, entry);
    }
    return entry;
  }
}

/** Every token's bytes, once per tokenizer and vocabulary size (150k tokens: worth keeping). */
const vocabularies = new WeakMap<QwenTokenizer, Map<number, VocabularyBytes>>();
/** Compiled grammars, once per model and style. */
const grammarsByModel = new WeakMap<Qwen3VL, Map<GrammarStyle, AnswerGrammars>>();

function answerGrammars(model: Qwen3VL, tokenizer: QwenTokenizer, style: GrammarStyle, vocabSize: number, eosIds: readonly number[]): AnswerGrammars {
  const cached = grammarsByModel.get(model)?.get(style);
  if (cached) return cached;
  let byVocab = vocabularies.get(tokenizer);
  if (!byVocab) vocabularies.set(tokenizer, (byVocab = new Map()));
  let vocabulary = byVocab.get(vocabSize);
  if (!vocabulary) byVocab.set(vocabSize, (vocabulary = tokenBytes(tokenizer, vocabSize)));
  const grammars = new AnswerGrammars(model, vocabulary, eosIds, style);
  let byStyle = grammarsByModel.get(model);
  if (!byStyle) grammarsByModel.set(model, (byStyle = new Map()));
  byStyle.set(style, grammars);
  return grammars;
}

export const CONSTRAIN_OPTIONS: readonly ConstrainOption[] = ['auto', 'pigg', 'qwen-json', 'point', 'none'];

/** The grammar a Grounder decodes with: 'auto' is the style's own. */
function resolveConstrain(constrain: ConstrainOption | undefined, style: AnswerStyle): ConstrainStyle {
  const value = constrain ?? 'auto';
  if (!CONSTRAIN_OPTIONS.includes(value)) {
    throw grounderError('INVALID_ARGUMENT', `constrain must be one of ${CONSTRAIN_OPTIONS.join(', ')}, got '${String(value)}'`);
  }
  return value === 'auto' ? style : value;
}

function resolveParser(parser: ParserName | undefined): ParserName {
  const value = parser ?? 'robust';
  if (!PARSERS.includes(value)) throw grounderError('INVALID_ARGUMENT', `parser must be one of ${PARSERS.join(', ')}, got '${String(value)}'`);
  return value;
}

function resolveSampling(sampling: SamplingOptions | null | undefined): Required<SamplingOptions> | null {
  if (sampling === undefined || sampling === null) return null;
  try {
    return checkSampling(sampling);
  } catch (error) {
    throw grounderError('INVALID_ARGUMENT', (error as Error).message);
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw grounderError('INVALID_ARGUMENT', `${name} must be a positive integer, got ${value}`);
  return value;
}

export class Grounder implements AsyncDisposable {
  readonly style: AnswerStyle;
  /** The grammar answers are decoded under ('none': free decoding). */
  readonly constrain: ConstrainStyle;
  readonly parser: ParserName;
  readonly sampling: Required<SamplingOptions> | null;
  readonly maxNewTokens: number;
  readonly maxBatch: number;
  readonly image: ImageProcessorOptions;
  /** The checks every request's inputs pass before any pixel is decoded (and every Personalizer feedback tap, see checkInput). */
  readonly checker: InputChecker;
  private readonly images: ImageProcessor;
  private readonly batcher: Batcher<Prepared, GroundResult>;
  private readonly eosIds: ReadonlySet<number>;
  private readonly onBatch?: (stats: BatchStats) => void;
  private disposed = false;
  private closed: Promise<void> | null = null;
  private nextId = 0;
  /** Adapters a running batch uses (name -> batches): removing one waits for them, so the batch never loses it. */
  private readonly pins = new Map<string, number>();
  /** Adapters removed while pinned: gone for new requests, unregistered from the engine when their last batch ends. */
  private readonly removing = new Set<string>();

  private constructor(
    readonly model: Qwen3VL,
    readonly tokenizer: QwenTokenizer,
    readonly modelName: string,
    eosIds: readonly number[],
    private readonly grammars: AnswerGrammars | null,
    settings: GrounderSettings,
    private readonly owned: { model: boolean; pool: ImagePool | null },
  ) {
    this.style = settings.style ?? 'pigg';
    this.constrain = resolveConstrain(settings.constrain, this.style);
    this.parser = resolveParser(settings.parser);
    this.sampling = resolveSampling(settings.sampling);
    this.maxNewTokens = positiveInteger('maxNewTokens', settings.maxNewTokens ?? engineDefaults().generate.maxNewTokens);
    this.maxBatch = positiveInteger('maxBatch', settings.maxBatch ?? DEFAULT_MAX_BATCH);
    this.image = { ...PIGG_PIXELS, ...settings.image };
    this.checker = new InputChecker(tokenizer, settings.input);
    this.images = settings.images ?? owned.pool?.process ?? processImage;
    this.eosIds = new Set(eosIds);
    this.onBatch = settings.onBatch;
    this.batcher = new Batcher((rows, signal) => this.run(rows, signal), this.maxBatch);
    grammars?.forBudget(this.maxNewTokens); // a budget too small for a complete answer fails here
    if (settings.maxAdapterBytes !== undefined) {
      if (!(settings.maxAdapterBytes >= 0)) throw grounderError('INVALID_ARGUMENT', `maxAdapterBytes must be >= 0, got ${settings.maxAdapterBytes}`);
      model.setAdapterBudget(settings.maxAdapterBytes);
    }
  }

  /** Loads a model folder (weights, tokenizer) and gets ready to ground. */
  static async load(dir: string, options: GrounderOptions = {}): Promise<Grounder> {
    const { style, constrain, parser, sampling, image, maxNewTokens, maxBatch, images, imageWorkers, onBatch, maxAdapterBytes, input, ...load } = options;
    const settings: GrounderSettings = { style, constrain, parser, sampling, image, maxNewTokens, maxBatch, images, imageWorkers, onBatch, maxAdapterBytes, input };
    // Settings are checked before minutes of loading.
    if (maxNewTokens !== undefined) positiveInteger('maxNewTokens', maxNewTokens);
    if (maxBatch !== undefined) positiveInteger('maxBatch', maxBatch);
    resolveConstrain(constrain, style ?? 'pigg');
    resolveParser(parser);
    resolveSampling(sampling);
    const tokenizer = QwenTokenizer.fromDir(dir);
    const model = await Qwen3VL.load(dir, load);
    try {
      return await Grounder.create(model, tokenizer, basename(dir), settings, true);
    } catch (error) {
      model.dispose();
      throw error;
    }
  }

  /**
   * A Grounder over a model that stays the caller's (dispose() leaves it loaded): predict() after a fine-tune uses
   * this. Without `images` it decodes on this thread.
   */
  static async fromModel(model: Qwen3VL, tokenizer: QwenTokenizer, settings: GrounderSettings & { modelName?: string } = {}): Promise<Grounder> {
    const { modelName, ...rest } = settings;
    return Grounder.create(model, tokenizer, modelName, { ...rest, images: rest.images ?? processImage }, false);
  }

  private static async create(model: Qwen3VL, tokenizer: QwenTokenizer, modelName: string | undefined, settings: GrounderSettings,
    ownsModel: boolean): Promise<Grounder> {
    const info = await model.info();
    const constrain = resolveConstrain(settings.constrain, settings.style ?? 'pigg');
    const grammars = constrain === 'none' ? null : answerGrammars(model, tokenizer, constrain, info.config.text.vocab, info.config.eosTokenIds);
    const pool = settings.images ? null : new ImagePool(settings.imageWorkers);
    try {
      return new Grounder(model, tokenizer, modelName ?? basename(info.path), info.config.eosTokenIds, grammars, settings, { model: ownsModel, pool });
    } catch (error) {
      await pool?.close();
      throw error;
    }
  }

  /** Where this Grounder decodes and resizes images (its image pool's workers, when it has them). */
  get imageProcessor(): ImageProcessor {
    return this.images;
  }

  /** Requests queued or running. */
  get pending(): number {
    return this.batcher.pending;
  }

  /**
   * The tap point for one instruction on one screenshot (a file path or the encoded image bytes). Calls made while
   * the engine is busy wait and then run together, up to maxBatch per generate call.
   */
  ground(image: string | Uint8Array, instruction: string, options: GroundOptions = {}): Promise<GroundResult> {
    const called = performance.now();
    try {
      this.live();
      if (typeof image !== 'string' && !(image instanceof Uint8Array)) {
        throw grounderError('INVALID_ARGUMENT', 'image must be a file path or the bytes of an encoded image (Buffer/Uint8Array)');
      }
      this.checker.text(instruction, 'instruction');
      const adapter = this.adapterFor(options.user);
      const maxNewTokens = positiveInteger('maxNewTokens', options.maxNewTokens ?? this.maxNewTokens);
      this.grammars?.forBudget(maxNewTokens);
      const sampling = options.sampling === undefined ? this.sampling : resolveSampling(options.sampling);
      const id = `ground-${this.nextId++}`;
      const prepared = (async (): Promise<Prepared> => {
        const processed = await this.processChecked(image);
        const encoded = encodeSample(this.tokenizer, { id, images: [processed], prompt: buildInstructionPrompt(instruction, this.style) }, { mode: 'generate' });
        const { width, height } = processed.sourceSize;
        return { encoded, width, height, adapter, maxNewTokens, sampling, called, onText: options.onText };
      })();
      return this.batcher.submit(prepared, { signal: options.signal });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Checks a screenshot, an instruction and a referring text exactly as ground() would take them (the image's header,
   * then the image processed as for inference, off this thread with an image pool) and answers the image's size.
   * Feedback is checked with it before it is stored, so a stored tap never fails a training job on its inputs.
   */
  async checkInput(image: string | Uint8Array, instruction: string, referring: string | null): Promise<CheckedInput> {
    this.live();
    this.checker.texts(instruction, referring);
    return (await this.processChecked(image)).sourceSize;
  }

  /** The image's header checked (declared pixels, aspect ratio, format), then decoded and resized. */
  private async processChecked(image: string | Uint8Array) {
    if (typeof image === 'string' ? image.length === 0 : image.byteLength === 0) throw grounderError('INVALID_IMAGE', 'the image is empty');
    await this.checker.image(image);
    return this.images(image, this.image).catch((error: Error) => {
      throw grounderError('INVALID_IMAGE', error.message, error);
    });
  }

  /**
   * Grounds dataset samples in consecutive batches of batchSize (each its own generate call, not mixed with other
   * requests, so results do not depend on traffic); the next batch's images are prepared while one runs. Results are
   * in sample order. The batch path of predict() and `pigg eval`.
   */
  async groundSamples(samples: readonly Sample[], datasetDir: string, options: GroundSamplesOptions = {}): Promise<GroundResult[]> {
    this.live();
    const batchSize = positiveInteger('batchSize', options.batchSize ?? this.maxBatch);
    const adapter = this.adapterFor(options.user);
    const maxNewTokens = positiveInteger('maxNewTokens', options.maxNewTokens ?? this.maxNewTokens);
    this.grammars?.forBudget(maxNewTokens);
    const sampling = options.sampling === undefined ? this.sampling : resolveSampling(options.sampling);
    const settings = { style: this.style, image: this.image };
    // A failed batch stops the ones already queued behind it.
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    setMaxListeners(0, signal); // every row of the batches under way listens to it (and lets go when it settles)
    const results: GroundResult[] = [];
    const batches = prefetched(Math.ceil(samples.length / batchSize), (index) => {
      const group = {};
      return Promise.all(samples.slice(index * batchSize, (index + 1) * batchSize).map((sample, i) => {
        const called = performance.now();
        const rowSampling = sampling && { ...sampling, seed: sampling.seed + index * batchSize + i };
        const prepared = sampleSpec(sample, datasetDir, settings, false, this.images).then((spec): Prepared => ({
          encoded: encodeSample(this.tokenizer, spec, { mode: 'generate' }),
          width: spec.images[0]!.sourceSize.width, height: spec.images[0]!.sourceSize.height, adapter, maxNewTokens, sampling: rowSampling, called,
        }));
        return this.batcher.submit(prepared, { signal, group });
      }));
    });
    try {
      for await (const batch of batches) {
        results.push(...batch);
        options.onProgress?.(results.length, samples.length);
      }
    } catch (error) {
      stop.abort();
      // An abort of the caller's signal is what the caller sees, whatever row noticed it first.
      if (options.signal?.aborted && (error as Error).name !== 'AbortError') throw abortError('groundSamples was aborted', options.signal.reason);
      throw error;
    }
    return results;
  }

  /** Registers a PEFT LoRA adapter folder under `name` (replacing a same-named one); ground({ user: name }) uses it. */
  async addAdapter(name: string, path: string): Promise<AdapterInfo> {
    this.live();
    if (typeof name !== 'string' || name === '') throw grounderError('INVALID_ARGUMENT', 'an adapter name must be a non-empty string');
    const info = await this.model.registerAdapter(name, path);
    this.removing.delete(name); // re-added while a batch still held the old one: it stays
    return info;
  }

  /**
   * Unregisters an adapter; false when none had that name. Requests queued for it fail (UNKNOWN_ADAPTER); a batch
   * already running with it finishes with it, and the engine lets go of it when that batch ends.
   */
  removeAdapter(name: string): boolean {
    this.live();
    if (this.removing.has(name)) return false;
    if (!this.pins.has(name)) return this.model.unregisterAdapter(name);
    const known = this.model.adapters().some((a) => a.name === name);
    if (known) this.removing.add(name);
    return known;
  }

  adapters(): AdapterInfo[] {
    this.live();
    return this.model.adapters().filter((a) => !this.removing.has(a.name));
  }

  /**
   * Rejects queued requests, aborts the running batch and releases the model (when the Grounder loaded it) and its
   * image pool once that batch has stopped.
   */
  dispose(): void {
    void this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private close(): Promise<void> {
    if (!this.closed) {
      this.disposed = true;
      this.closed = (async () => {
        await this.batcher.close(grounderError('GROUNDER_DISPOSED', 'the grounder was disposed'));
        if (this.owned.model) this.model.dispose();
        await this.owned.pool?.close();
      })();
    }
    return this.closed;
  }

  private live(): void {
    if (this.disposed) throw grounderError('GROUNDER_DISPOSED', 'the grounder was disposed');
  }

  private knownAdapters(): Set<string> {
    return new Set(this.adapters().map((a) => a.name));
  }

  private adapterFor(user: string | null | undefined): string | null {
    if (user === undefined || user === null) return null;
    if (typeof user !== 'string' || user === '') throw grounderError('INVALID_ARGUMENT', 'user must be a non-empty string (an adapter name)');
    const known = this.knownAdapters();
    if (!known.has(user)) {
      const names = [...known];
      throw grounderError('UNKNOWN_ADAPTER', `no adapter named '${user}' (${names.length === 0 ? 'none added' : `adapters: ${names.join(', ')}`})`);
    }
    return user;
  }

  /** Generated tokens up to and including the first end token. */
  private generated(tokens: readonly number[], limit: number): number[] {
    const end = tokens.findIndex((t) => this.eosIds.has(t));
    return tokens.slice(0, Math.min(limit, end < 0 ? tokens.length : end + 1));
  }

  private async run(rows: Array<BatchRow<Prepared>>, signal: AbortSignal): Promise<Array<GroundResult | Error>> {
    const out: Array<GroundResult | Error | null> = rows.map(() => null);
    // An adapter removed while its request waited: that request fails alone.
    if (rows.some((row) => row.input.adapter !== null)) {
      const known = this.knownAdapters();
      rows.forEach((row, i) => {
        const name = row.input.adapter;
        if (name !== null && !known.has(name)) out[i] = grounderError('UNKNOWN_ADAPTER', `adapter '${name}' was removed before the request ran`);
      });
    }
    const live = rows.flatMap((row, i) => (out[i] === null ? [{ row, i }] : []));
    if (live.length === 0) return out as Array<GroundResult | Error>;
    const pinned = [...new Set(live.flatMap(({ row }) => (row.input.adapter === null ? [] : [row.input.adapter])))];
    this.pin(pinned);
    try {
      return await this.runLive(live, out, signal);
    } finally {
      this.unpin(pinned);
    }
  }

  private pin(names: readonly string[]): void {
    for (const name of names) this.pins.set(name, (this.pins.get(name) ?? 0) + 1);
  }

  /** Lets go of a batch's adapters; one removed meanwhile leaves the engine with its last batch. */
  private unpin(names: readonly string[]): void {
    for (const name of names) {
      const left = this.pins.get(name)! - 1;
      if (left > 0) {
        this.pins.set(name, left);
        continue;
      }
      this.pins.delete(name);
      if (this.removing.delete(name) && !this.disposed) this.model.unregisterAdapter(name);
    }
  }

  private async runLive(live: Array<{ row: BatchRow<Prepared>; i: number }>, out: Array<GroundResult | Error | null>, signal: AbortSignal): Promise<Array<GroundResult | Error>> {

    const inputs: NamedTensors = toHostTensors(collate(live.map(({ row }) => row.input.encoded), 'left', this.tokenizer.padId));
    const options: GenerateOptions = { maxNewTokens: Math.max(...live.map(({ row }) => row.input.maxNewTokens)), signal };
    if (live.some(({ row }) => row.input.adapter !== null)) options.adapters = live.map(({ row }) => row.input.adapter);
    if (live.some(({ row }) => row.input.sampling)) options.sampling = live.map(({ row }) => row.input.sampling);
    if (live.some(({ row }) => row.signal)) options.rowSignals = live.map(({ row }) => row.signal);
    if (this.grammars) options.grammars = live.map(({ row }) => this.grammars!.forBudget(row.input.maxNewTokens));
    const streams = live.map(({ row }) => row.input.onText && new TextStream(this.tokenizer, this.eosIds, row.input.maxNewTokens, row.input.onText));
    if (streams.some(Boolean)) options.onStep = (tokens) => tokens.forEach((token, r) => streams[r]?.push(token));
    const start = performance.now();
    let result: GenerateResult;
    try {
      result = await this.model.generate(inputs, options);
    } catch (error) {
      for (const stream of streams) stream?.close();
      throw error;
    }
    const generateSeconds = (performance.now() - start) / 1000;

    let tokens = 0;
    live.forEach(({ row, i }, r) => {
      const { input } = row;
      if (result.aborted[r] || row.signal?.aborted) {
        streams[r]?.close();
        out[i] = abortError('the request was aborted while it ran', row.signal?.reason);
        return;
      }
      const ids = this.generated(result.tokens[r]!, input.maxNewTokens);
      const last = ids.at(-1);
      tokens += ids.length;
      const text = this.tokenizer.decode(ids, { skipSpecialTokens: true });
      streams[r]?.finish(text);
      const answer = readAnswer(text, this.parser);
      out[i] = {
        x: fromGrid(answer.x, input.width),
        y: fromGrid(answer.y, input.height),
        grid: { x: answer.x, y: answer.y },
        referring: answer.referring,
        text,
        tokens: ids.length,
        promptTokens: input.encoded.inputIds.length,
        finishReason: last !== undefined && this.eosIds.has(last) ? 'stop' : 'length',
        seconds: (performance.now() - input.called) / 1000,
        adapter: input.adapter,
        parsed: answer.ok,
      };
    });
    if (this.onBatch) {
      const { timing } = result;
      this.report({
        size: live.length,
        adapters: new Set(live.flatMap(({ row }) => (row.input.adapter === null ? [] : [row.input.adapter]))).size,
        queueSeconds: live.map(({ row }) => row.queueSeconds),
        visionSeconds: timing.vision,
        prefillSeconds: timing.prefill,
        decodeSeconds: timing.decode,
        generateSeconds,
        tokens,
      });
    }
    return out as Array<GroundResult | Error>;
  }

  /** A metrics callback that throws must not fail the requests it reports on. */
  private report(stats: BatchStats): void {
    try {
      this.onBatch?.(stats);
    } catch (error) {
      process.emitWarning(`Grounder onBatch threw: ${(error as Error).message}`);
    }
  }
}
