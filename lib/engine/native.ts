// Loads the native addon (build/Release/pigg.node) and types its surface. Everything here returns Promises
// settled from worker threads; errors arrive as JS Errors with the engine's message.
import { createRequire } from 'node:module';
import { buildCommand, PACKAGE_ROOT } from '../package.js';
import type { HostTensor } from '../safetensors.js';
import type { SamplingOptions } from './sampling.js';

export type NamedTensors = Record<string, HostTensor>;

export interface NativeLoadOptions {
  device?: string;
  dtype?: 'fp32' | 'bf16';
  threads?: number;
  allowTf32?: boolean;
}

/** The cancellation handle of one native call (and its progress, for loading). */
export interface NativeControl {
  cancel(): void;
  progress(): number;
}

/** A compiled answer grammar held by the engine (its token masks are cached there per state). */
export type NativeGrammar = { readonly __nativeGrammar: unique symbol };

export interface NativeGrammarTables {
  states: number;
  start: number;
  transitions: Int32Array;
  accepting: Uint8Array;
  vocabSize: number;
  offsets: Int32Array;
  bytes: Uint8Array;
  special: Uint8Array;
  eosIds: number[];
}

export interface NativeGenerateOptions {
  maxNewTokens?: number;
  eosTokenIds?: number[];
  returnStepLogits?: boolean;
  adapters?: Array<string | null>;
  grammars?: Array<NativeGrammar | null>;
  rowControls?: Array<NativeControl | null>;
  /** Per row, every field filled in (lib/engine/sampling.ts checkSampling); null: greedy. */
  sampling?: Array<Required<SamplingOptions> | null>;
  onStep?: (tokens: number[]) => void;
}

export interface NativeTrainer {
  step(batches: NamedTensors[], control?: NativeControl): Promise<string>;
  gradients(batch: NamedTensors, names: string[]): Promise<NamedTensors>;
  save(dir: string, mergeAdapter: boolean, control?: NativeControl): Promise<void>;
  saveState(dir: string, control?: NativeControl): Promise<void>;
  loadState(dir: string): Promise<void>;
  info(): Promise<string>;
  dispose(): void;
}

export interface NativeModel {
  info(): Promise<string>;
  createTrainer(optionsJson: string): Promise<NativeTrainer>;
  loadAdapter(dir: string): Promise<void>;
  registerAdapter(name: string, dir: string): Promise<string>;
  unregisterAdapter(name: string): boolean;
  adapters(): string;
  setAdapterBudget(bytes: number): void;
  forward(inputs: NamedTensors, outputs: string[], control?: NativeControl): Promise<NamedTensors>;
  generate(inputs: NamedTensors, options: NativeGenerateOptions, control?: NativeControl): Promise<NamedTensors>;
  dispose(): void;
}

export interface NativeAddon {
  load(dir: string, options: NativeLoadOptions, control?: NativeControl): Promise<NativeModel>;
  createControl(): NativeControl;
  createGrammar(tables: NativeGrammarTables): NativeGrammar;
  inspect(dir: string): Promise<string>;
  readTensors(path: string): Promise<NamedTensors>;
  writeTensors(path: string, tensors: NamedTensors): Promise<void>;
  initRandom(configJson: string, dir: string, options: { dtype?: 'fp32' | 'bf16'; device?: string; seed?: number }): Promise<void>;
  versions(): string;
  /** The decode loop's token picker alone, on fixed logits [rows, vocab] (f32): `draws` picks per row ('tokens' [draws, rows]). */
  sampleTokens(logits: NamedTensors, sampling: Array<Required<SamplingOptions> | null>, draws: number): Promise<NamedTensors>;
}

let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    try {
      addon = load(PACKAGE_ROOT);
    } catch (error) {
      throw new Error(`the native engine is not built (${(error as Error).message.split('\n')[0]}); run \`${buildCommand()}\``);
    }
  }
  return addon;
}
