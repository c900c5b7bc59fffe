// Types of scripts/libtorch.mjs for the TypeScript that imports it (`pigg doctor`).
export interface Libtorch {
  prefix: string;
  root: string;
  include: string;
  lib: string;
  version: string;
  cuda: boolean;
  source: 'LIBTORCH' | 'python3' | '.venv' | 'cache';
}
export type TorchFlavour = 'cpu' | 'cuda';
export function isDevelopmentCheckout(): boolean;
export function cacheDir(): string;
export function torchFlavour(): TorchFlavour;
export function cachedTorchDir(flavour: TorchFlavour): string;
export function findLibtorch(flavour?: TorchFlavour): Libtorch | { error: string };
export function pipEnvironment(python?: string): NodeJS.ProcessEnv;
export function torchSpec(flavour: TorchFlavour): string;
export function provisionCache(flavour: TorchFlavour): Libtorch | { error: string };
