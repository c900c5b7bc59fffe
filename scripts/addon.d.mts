// Types of scripts/addon.mjs for the TypeScript that imports it (`pigg doctor`).
import type { Libtorch } from './libtorch.mjs';
export const ADDON: string;
export const STAMP: string;
export interface BuildDescription {
  key: string;
  pigg: string;
  sources: string;
  torch: { version: string; root: string; cuda: boolean; source: Libtorch['source'] };
  node: { modules: string; napi: string };
  platform: string;
  builtAt?: string;
}
export function sourceHash(root: string): string;
export function describeBuild(root: string, libtorch: Libtorch): BuildDescription;
export function writeStamp(root: string, build: BuildDescription): void;
export function buildAddon(root: string, libtorch: Libtorch, extraArgs?: string[]): void;
export function probeAddon(file: string): { torch: string; cuda: boolean };
