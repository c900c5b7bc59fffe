// Grounder: one screenshot and one instruction in, a tap point out, in one call. It owns the five ideas a caller
// would otherwise juggle (answer style, the 'generate' prompt, host tensors, special-token decoding, the 0-1000
// grid) and batches concurrent calls, also for different users' adapters, into one generate call.
//
//   const grounder = await Grounder.load(dir, { device: 'cuda' });
//   const tap = await grounder.ground('screen.png', 'Open Wi-Fi settings');   // { x, y } in the image's pixels
//
// predict() and `pigg eval` run on groundSamples(), the same batch path, so there is one inference path.
//
// This file holds the Grounder's calls (loading, ground, groundSamples, adapters, disposal); its settings, the batch
// path, answer grammars, adapter pins and streaming are files of their own (settings.ts, generate-batch.ts,
// answer-grammars.ts, served-adapters.ts, text-stream.ts), as are batching, grammars, input checks and token bytes.
import { setMaxListeners } from 'node:events';
import { basename } from 'node:path';
import type { Sample } from '../data/types.js';
import { buildInstructionPrompt, type AnswerStyle, type ParserName } from '../data/parse.js';
import { engineDefaults, Qwen3VL, type AdapterInfo } from '../engine/model.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { PIGG_PIXELS, processImage, type ImageProcessorOptions } from '../processor/image.js';
import { ImagePool, type ImageProcessor } from '../processor/image-pool.js';
import { encodeSample } from '../processor/sample.js';
import { QwenTokenizer } from '../processor/tokenizer.js';
import { sampleSpec } from '../processor/inputs.js';
import { prefetched } from '../util/prefetch.js';
import { answerGrammars, type AnswerGrammars } from './answer-grammars.js';
import { abortError, Batcher } from './batcher.js';
import { grounderError } from './errors.js';
import { GenerateBatches, type GroundResult, type Prepared } from './generate-batch.js';
import type { ConstrainStyle } from './grammar.js';
import { ServedAdapters } from './served-adapters.js';
import {
  DEFAULT_MAX_BATCH, positiveInteger, resolveConstrain, resolveParser, resolveSampling,
  type GrounderOptions, type GrounderSettings, type GroundOptions, type GroundSamplesOptions,
} from './settings.js';
import { InputChecker, type CheckedInput } from './validate.js';

export { longestAnswerBytes } from './answer-grammars.js';
export type { GrounderError, GrounderErrorCode } from './errors.js';
export type { BatchStats, GroundResult } from './generate-batch.js';
export {
  CONSTRAIN_OPTIONS, DEFAULT_MAX_BATCH,
  type ConstrainOption, type GrounderOptions, type GrounderSettings, type GroundOptions, type GroundSamplesOptions,
} from './settings.js';

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
  private readonly served: ServedAdapters;
  private disposed = false;
  private closed: Promise<void> | null = null;
  private nextId = 0;

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
    this.served = new ServedAdapters(model);
    const batches = new GenerateBatches({ model, tokenizer, eosIds: new Set(eosIds), grammars, parser: this.parser, adapters: this.served, onBatch: settings.onBatch });
    this.batcher = new Batcher((rows, signal) => batches.run(rows, signal), this.maxBatch);
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
      const { adapter, maxNewTokens, sampling } = this.requestSettings(options);
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
    const { adapter, maxNewTokens, sampling } = this.requestSettings(options);
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
    return this.served.add(name, path);
  }

  /**
   * Unregisters an adapter; false when none had that name. Requests queued for it fail (UNKNOWN_ADAPTER); a batch
   * already running with it finishes with it, and the engine lets go of it when that batch ends.
   */
  removeAdapter(name: string): boolean {
    this.live();
    return this.served.remove(name);
  }

  adapters(): AdapterInfo[] {
    this.live();
    return this.served.list();
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
      this.served.close();
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

  private adapterFor(user: string | null | undefined): string | null {
    if (user === undefined || user === null) return null;
    if (typeof user !== 'string' || user === '') throw grounderError('INVALID_ARGUMENT', 'user must be a non-empty string (an adapter name)');
    const known = this.served.names();
    if (!known.has(user)) {
      const names = [...known];
      throw grounderError('UNKNOWN_ADAPTER', `no adapter named '${user}' (${names.length === 0 ? 'none added' : `adapters: ${names.join(', ')}`})`);
    }
    return user;
  }

  /** A request's adapter, token budget (one its grammar can answer in) and sampling, checked. */
  private requestSettings(options: Pick<GroundOptions, 'user' | 'maxNewTokens' | 'sampling'>) {
    const adapter = this.adapterFor(options.user);
    const maxNewTokens = positiveInteger('maxNewTokens', options.maxNewTokens ?? this.maxNewTokens);
    this.grammars?.forBudget(maxNewTokens);
    const sampling = options.sampling === undefined ? this.sampling : resolveSampling(options.sampling);
    return { adapter, maxNewTokens, sampling };
  }
}
