// The generator's settings: options as given (users, personal users, samples per user, seed, canvas size),
// resolved and checked into a SynthConfig.
import { rngFor } from './random.js';

export interface SynthOptions {
  /** Number of users, ids "1".."N" (default 14). */
  users?: number;
  /** How many of the first users are "personal" (default min(4, max(1, floor(users / 3)))); the rest are "global". */
  personal?: number;
  /** Samples per user: a fixed count or a range drawn per user from the seed (default 30..90). */
  samplesPerUser?: number | { min: number; max: number };
  seed?: string | number;
  /** Canvas size in pixels (default 1080x2400; `small` gives 540x1200). */
  width?: number;
  height?: number;
  small?: boolean;
}

export interface SynthConfig {
  seed: string;
  users: string[];
  personal: string[];
  global: string[];
  samplesPerUser: { min: number; max: number };
  width: number;
  height: number;
}

export function checkInt(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, got ${value}`);
}

export function resolveSynthConfig(options: SynthOptions = {}): SynthConfig {
  const users = options.users ?? 14;
  checkInt('users', users, 1);
  const personal = options.personal ?? Math.min(4, Math.max(1, Math.floor(users / 3)));
  checkInt('personal', personal, 0);
  if (personal > users) throw new Error(`personal (${personal}) exceeds users (${users})`);
  const spu = options.samplesPerUser ?? { min: 30, max: 90 };
  const range = typeof spu === 'number' ? { min: spu, max: spu } : { min: spu.min, max: spu.max };
  checkInt('samplesPerUser min', range.min, 1);
  checkInt('samplesPerUser max', range.max, range.min);
  if (options.small && (options.width !== undefined || options.height !== undefined)) {
    throw new Error('small and an explicit width/height are mutually exclusive');
  }
  const width = options.width ?? (options.small ? 540 : 1080);
  const height = options.height ?? (options.small ? 1200 : 2400);
  checkInt('width', width, 240);
  checkInt('height', height, 240);
  const ids = Array.from({ length: users }, (_, i) => String(i + 1));
  return {
    seed: String(options.seed ?? 'pigg'),
    users: ids,
    personal: ids.slice(0, personal),
    global: ids.slice(personal),
    samplesPerUser: range,
    width,
    height,
  };
}

/** The number of samples user `user` gets (drawn from the seed when samplesPerUser is a range). */
export function userSampleCount(config: SynthConfig, user: string): number {
  const { min, max } = config.samplesPerUser;
  return rngFor(`${config.seed}|count|${user}`).int(min, max);
}
