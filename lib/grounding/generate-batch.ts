// The batch path: the rows the Batcher formed, one generate call (adapters, sampling, grammars and abort signals
// per row), the answers read back as tap points in each image's pixels, and the call's figures for metrics.
import { fromGrid } from '../data/metrics.js';
import { readAnswer, type ParserName } from '../data/parse.js';
import type { GenerateOptions, GenerateResult, NamedTensors, Qwen3VL } from '../engine/model.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { collate, toHostTensors, type EncodedSample } from '../processor/sample.js';
import type { QwenTokenizer } from '../processor/tokenizer.js';
import type { AnswerGrammars } from './answer-grammars.js';
import { abortError, type BatchRow } from './batcher.js';
import { grounderError } from './errors.js';
import type { ServedAdapters } from './served-adapters.js';
import { TextStream } from './text-stream.js';

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

/** One request, ready for the engine. */
export interface Prepared {
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

/** What a batch runs on: the Grounder's model, tokenizer, grammars, parser and adapters. */
export interface BatchParts {
  model: Qwen3VL;
  tokenizer: QwenTokenizer;
  eosIds: ReadonlySet<number>;
  /** null: free decoding. */
  grammars: AnswerGrammars | null;
  parser: ParserName;
  adapters: ServedAdapters;
  /** Called after every generate call. */
  onBatch?: (stats: BatchStats) => void;
}

/** Runs the Batcher's batches: one generate call each. */
export class GenerateBatches {
  constructor(private readonly parts: BatchParts) {}

  /** One result or Error per row; `signal` aborts the whole call. */
  async run(rows: Array<BatchRow<Prepared>>, signal: AbortSignal): Promise<Array<GroundResult | Error>> {
    const out: Array<GroundResult | Error | null> = rows.map(() => null);
    // An adapter removed while its request waited: that request fails alone.
    if (rows.some((row) => row.input.adapter !== null)) {
      const known = this.parts.adapters.names();
      rows.forEach((row, i) => {
        const name = row.input.adapter;
        if (name !== null && !known.has(name)) out[i] = grounderError('UNKNOWN_ADAPTER', `adapter '${name}' was removed before the request ran`);
      });
    }
    const live = rows.flatMap((row, i) => (out[i] === null ? [{ row, i }] : []));
    if (live.length === 0) return out as Array<GroundResult | Error>;
    const pinned = [...new Set(live.flatMap(({ row }) => (row.input.adapter === null ? [] : [row.input.adapter])))];
    this.parts.adapters.pin(pinned);
    try {
      return await this.runLive(live, out, signal);
    } finally {
      this.parts.adapters.unpin(pinned);
    }
  }

  private async runLive(live: Array<{ row: BatchRow<Prepared>; i: number }>, out: Array<GroundResult | Error | null>, signal: AbortSignal): Promise<Array<GroundResult | Error>> {
    const { model, tokenizer, eosIds, grammars } = this.parts;
    const inputs: NamedTensors = toHostTensors(collate(live.map(({ row }) => row.input.encoded), 'left', tokenizer.padId));
    const options: GenerateOptions = { maxNewTokens: Math.max(...live.map(({ row }) => row.input.maxNewTokens)), signal };
    if (live.some(({ row }) => row.input.adapter !== null)) options.adapters = live.map(({ row }) => row.input.adapter);
    if (live.some(({ row }) => row.input.sampling)) options.sampling = live.map(({ row }) => row.input.sampling);
    if (live.some(({ row }) => row.signal)) options.rowSignals = live.map(({ row }) => row.signal);
    if (grammars) options.grammars = live.map(({ row }) => grammars.forBudget(row.input.maxNewTokens));
    const streams = live.map(({ row }) => row.input.onText && new TextStream(tokenizer, eosIds, row.input.maxNewTokens, row.input.onText));
    if (streams.some(Boolean)) options.onStep = (tokens) => tokens.forEach((token, r) => streams[r]?.push(token));
    const start = performance.now();
    let result: GenerateResult;
    try {
      result = await model.generate(inputs, options);
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
      const text = tokenizer.decode(ids, { skipSpecialTokens: true });
      streams[r]?.finish(text);
      const answer = readAnswer(text, this.parts.parser);
      out[i] = {
        x: fromGrid(answer.x, input.width),
        y: fromGrid(answer.y, input.height),
        grid: { x: answer.x, y: answer.y },
        referring: answer.referring,
        text,
        tokens: ids.length,
        promptTokens: input.encoded.inputIds.length,
        finishReason: last !== undefined && eosIds.has(last) ? 'stop' : 'length',
        seconds: (performance.now() - input.called) / 1000,
        adapter: input.adapter,
        parsed: answer.ok,
      };
    });
    if (this.parts.onBatch) {
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

  /** Generated tokens up to and including the first end token. */
  private generated(tokens: readonly number[], limit: number): number[] {
    const end = tokens.findIndex((t) => this.parts.eosIds.has(t));
    return tokens.slice(0, Math.min(limit, end < 0 ? tokens.length : end + 1));
  }

  /** A metrics callback that throws must not fail the requests it reports on. */
  private report(stats: BatchStats): void {
    try {
      this.parts.onBatch?.(stats);
    } catch (error) {
      process.emitWarning(`Grounder onBatch threw: ${(error as Error).message}`);
    }
  }
}
