// Loads the native addon (build/Release/pigg.node) and types its surface. Everything here returns Promises
// settled from worker threads; errors arrive as JS Errors with the engine's message.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostTensor } from '../safetensors.js';

export type NamedTensors = Record<string, HostTensor>;

export interface NativeLoadOptions {
  device?: string;
  dtype?: 'fp32' | 'bf16';
  threads?: number;
  allowTf32?: boolean;
}

export interface NativeGenerateOptions {
  maxNewTokens?: number;
  eosTokenIds?: number[];
  returnStepLogits?: boolean;
}

export interface NativeTrainer {
  step(batches: NamedTensors[]): Promise<string>;
  gradients(batch: NamedTensors, names: string[]): Promise<NamedTensors>;
  save(dir: string, mergeAdapter: boolean): Promise<void>;
  saveState(dir: string): Promise<void>;
  loadState(dir: string): Promise<void>;
  info(): Promise<string>;
  cancel(): void;
}

export interface NativeModel {
  info(): Promise<string>;
  createTrainer(optionsJson: string): Promise<NativeTrainer>;
  loadAdapter(dir: string): Promise<void>;
  forward(inputs: NamedTensors, outputs: string[]): Promise<NamedTensors>;
  generate(inputs: NamedTensors, options: NativeGenerateOptions): Promise<NamedTensors>;
  dispose(): void;
}

export interface NativeAddon {
  load(dir: string, options: NativeLoadOptions): Promise<NativeModel>;
  inspect(dir: string): Promise<string>;
  readTensors(path: string): Promise<NamedTensors>;
  writeTensors(path: string, tensors: NamedTensors): Promise<void>;
  initRandom(configJson: string, dir: string, options: { dtype?: 'fp32' | 'bf16'; device?: string; seed?: number }): Promise<void>;
  versions(): string;
}

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    try {
      addon = load(projectRoot);
    } catch (error) {
      throw new Error(`the native engine is not built (${(error as Error).message.split('\n')[0]}); run \`npm run build\``);
    }
  }
  return addon;
}
