// "synthphone": a deterministic synthetic phone-GUI grounding dataset (datasets.md §6) written in the
// gg-sample/1 layout (§5). Every sample is a pure function of (seed, user, index): its PRNG is seeded from a
// string hash of `${seed}|${user}|${index}`, so samples can be made alone and in any order. The personalization
// signal is built in: per-user layouts, themes, hidden home-screen labels, preferences for ambiguous intents
// and a tap bias, which a per-user prior can learn and a global prior cannot.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import type { DatasetInfo, Sample } from './types.js';

export const SYNTH_VERSION = 'synthphone@1.0.0';
/** Probability that an ambiguous intent resolves to the user's favourite candidate. */
export const P_PREF = 0.9;

// ---------------------------------------------------------------------------------------------------------
// PRNG: xmur3 string hash feeding sfc32 (both 32-bit, exact in JS integer arithmetic on every platform).

/** xmur3: returns a generator of 32-bit hashes of `text`. */
export function xmur3(text: string): () => number {
  let h = 1779033703 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  return () => {
    h = Math.imul(h ^ (h >>> 16), 2246822507);
    h = Math.imul(h ^ (h >>> 13), 3266489909);
    h ^= h >>> 16;
    return h >>> 0;
  };
}

/** sfc32: a small fast counter PRNG; returns floats in [0, 1). */
export function sfc32(a: number, b: number, c: number, d: number): () => number {
  return () => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
}

export interface Rng {
  float(): number;
  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
  shuffle<T>(items: readonly T[]): T[];
}

export function rngFor(key: string): Rng {
  const hash = xmur3(key);
  const next = sfc32(hash(), hash(), hash(), hash());
  // sfc32's first outputs are correlated with the seed words; discard them.
  for (let i = 0; i < 12; i++) next();
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  return {
    float: next,
    int,
    pick: (items) => {
      if (items.length === 0) throw new Error('cannot pick from an empty list');
      return items[int(0, items.length - 1)];
    },
    shuffle: (items) => {
      const out = items.slice();
      for (let i = out.length - 1; i > 0; i--) {
        const j = int(0, i);
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Configuration

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

function checkInt(name: string, value: number, min: number): void {
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

// ---------------------------------------------------------------------------------------------------------
// Catalogues. Glyphs are single even-odd paths on a 24x24 box.

const GLYPHS: Record<string, string> = {
  note: 'M9 5l11-2v13a3 3 0 1 1-2-2.8V7l-7 1.3V18a3 3 0 1 1-2-2.8z',
  image: 'M3 4h18v16H3zM5 6v10l4-5 3 4 2-2 5 5V6zM15 8a2 2 0 1 0 .01 0z',
  film: 'M3 5h18v14H3zM5 7v2h2V7zM5 15v2h2v-2zM17 7v2h2V7zM17 15v2h2v-2zM9 7v10h6V7z',
  play: 'M7 4l13 8-13 8z',
  paper: 'M4 4h16v16H4zM6 6v3h12V6zM6 11v7h5v-7zM13 11v2h5v-2zM13 15v2h5v-2z',
  runner: 'M14 2a2 2 0 1 1-.01 0zM9 7h6l2 5h3v2h-5l-1-2-2 4 3 3v4h-2v-3l-4-3-2 6H5l3-9z',
  heart: 'M12 20S3 14 3 8.5A4.5 4.5 0 0 1 12 6a4.5 4.5 0 0 1 9 2.5C21 14 12 20 12 20z',
  knight: 'M6 20h12v2H6zM8 18c0-5 3-6 3-9l-4 2-1-3 6-6h2c3 2 4 6 3 16z',
  puzzle: 'M4 8h4a2 2 0 1 1 4 0h4v4a2 2 0 1 1 0 4v4H4z',
  coin: 'M12 3a9 9 0 1 0 .01 0zM12 5a7 7 0 1 1-.01 0zM11 7h2v10h-2z',
  card: 'M2 5h20v14H2zM2 8v3h20V8zM4 14v2h6v-2z',
  bubble: 'M3 4h18v12H9l-5 4v-4H3z',
  bird: 'M3 12l7-2 4-6 2 6 5 2-5 2-2 6-4-6z',
  pin: 'M12 2a7 7 0 0 1 7 7c0 5-7 13-7 13S5 14 5 9a7 7 0 0 1 7-7zM12 6a3 3 0 1 0 .01 0z',
  map: 'M3 5l6-2 6 2 6-2v16l-6 2-6-2-6 2zM9 5v14M15 7v14',
  pencil: 'M4 17L14 7l3 3-10 10H4zM15 6l2-2 3 3-2 2z',
  jot: 'M5 3h14v18H5zM7 6v2h10V6zM7 10v2h10v-2zM7 14v2h6v-2z',
  bag: 'M5 8h14l-1 13H6zM9 8V6a3 3 0 0 1 6 0v2h-2V6a1 1 0 0 0-2 0v2z',
  cart: 'M2 3h4l3 11h10l3-8H8v2h11l-2 4H10L7 3zM9 17a2 2 0 1 0 .01 0zM17 17a2 2 0 1 0 .01 0z',
  calendar: 'M3 5h18v16H3zM5 10v9h14v-9zM7 2h2v4H7zM15 2h2v4h-2z',
  sun: 'M12 7a5 5 0 1 0 .01 0zM11 1h2v4h-2zM11 19h2v4h-2zM1 11h4v2H1zM19 11h4v2h-4z',
  clock: 'M12 3a9 9 0 1 0 .01 0zM12 5a7 7 0 1 1-.01 0zM11 7h2v5h4v2h-6z',
  calc: 'M5 2h14v20H5zM7 4v4h10V4zM7 10v3h3v-3zM11 10v3h3v-3zM15 10v3h2v-3zM7 15v3h3v-3zM11 15v3h3v-3z',
  envelope: 'M3 5h18v14H3zM5 7v1l7 5 7-5V7l-7 5z',
  folder: 'M3 5h7l2 2h9v12H3z',
  phone: 'M6 2h4l2 5-3 2a11 11 0 0 0 6 6l2-3 5 2v4a2 2 0 0 1-2 2A18 18 0 0 1 4 4a2 2 0 0 1 2-2z',
  globe: 'M12 2a10 10 0 1 0 .01 0zM12 4a8 8 0 1 1-.01 0zM11 4h2v16h-2zM4 11h16v2H4z',
  camera: 'M3 7h4l2-3h6l2 3h4v13H3zM12 9a4 4 0 1 0 .01 0z',
  wifi: 'M12 20l-3-3a4 4 0 0 1 6 0zM5 13a10 10 0 0 1 14 0l-2 2a7 7 0 0 0-10 0zM1 9a15 15 0 0 1 22 0l-2 2a12 12 0 0 0-18 0z',
  bluetooth: 'M11 2l7 6-5 4 5 4-7 6v-8l-4 3-1-1 5-4-5-4 1-1 4 3zM13 6v4l2-2zM13 14v4l2-2z',
  signal: 'M3 17h3v4H3zM9 12h3v9H9zM15 7h3v14h-3zM21 2h1v19h-1z',
  plane: 'M11 2h2v7l8 5v2l-8-2v5l3 2v1l-4-1-4 1v-1l3-2v-5l-8 2v-2l8-5z',
  torch: 'M7 2h10v5l-3 4v11h-4V11L7 7z',
  dnd: 'M12 2a10 10 0 1 0 .01 0zM6 11v2h12v-2z',
  hotspot: 'M12 10a2 2 0 1 1-.01 0zM11 12h2v10h-2zM6 6a8 8 0 0 1 12 0l-1.5 1.5a6 6 0 0 0-9 0z',
  drive: 'M12 3l9 16H3zM12 8l-5 9h10z',
  copy: 'M8 8h12v13H8zM4 3h12v3H7v11H4z',
  nearby: 'M12 8a4 4 0 1 1-.01 0zM12 2l2 4h-4zM12 22l-2-4h4zM2 12l4-2v4zM22 12l-4 2v-4z',
  devices: 'M2 6h12v10H2zM16 6h6v14h-6z',
  grid: 'M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 13h7v7h-7z',
  bell: 'M12 2a2 2 0 0 1 2 2 6 6 0 0 1 4 6v5l2 2v1H4v-1l2-2v-5a6 6 0 0 1 4-6 2 2 0 0 1 2-2zM10 20h4a2 2 0 0 1-4 0z',
  battery: 'M7 4h3V2h4v2h3v18H7z',
  storage: 'M3 4h18v5H3zM3 11h18v5H3zM3 18h18v4H3z',
  sound: 'M3 9h4l5-5v16l-5-5H3zM15 8a5 5 0 0 1 0 8v-2a3 3 0 0 0 0-4z',
  display: 'M3 4h18v13H3zM9 19h6v2H9z',
  access: 'M12 1a2 2 0 1 1-.01 0zM4 6h16v2h-5v14h-2v-7h-2v7H9V8H4z',
  shield: 'M12 2l8 3v6c0 5-3.5 9.5-8 11-4.5-1.5-8-6-8-11V5z',
  info: 'M12 2a10 10 0 1 0 .01 0zM11 10v7h2v-7zM11 6v2h2V6z',
  search: 'M10 3a7 7 0 1 1-.01 0zM10 5a5 5 0 1 0 .01 0zM15 16l2-2 5 5-2 2z',
  close: 'M5 7l2-2 5 5 5-5 2 2-5 5 5 5-2 2-5-5-5 5-2-2 5-5z',
  plus: 'M11 4h2v7h7v2h-7v7h-2v-7H4v-2h7z',
};

interface AppDef {
  id: string;
  label: string;
  category: string;
  glyph: string;
  color: string;
}

const app = (id: string, label: string, category: string, glyph: string, color: string): AppDef => ({
  id,
  label,
  category,
  glyph,
  color,
});

// Two apps per category so "my music app" is ambiguous; no label is a word of any instruction template.
const GRID_APPS: readonly AppDef[] = [
  app('tunes', 'Tunes', 'music', 'note', '#E52592'),
  app('beatbox', 'Beatbox', 'music', 'play', '#F9AB00'),
  app('gallery', 'Gallery', 'photos', 'image', '#1A73E8'),
  app('snapshots', 'Snapshots', 'photos', 'image', '#E8710A'),
  app('reels', 'Reels', 'video', 'film', '#D93025'),
  app('cinema', 'Cinema', 'video', 'play', '#5F35B5'),
  app('herald', 'Herald', 'news', 'paper', '#3C4043'),
  app('daily', 'Daily', 'news', 'paper', '#C5221F'),
  app('stride', 'Stride', 'fitness', 'runner', '#188038'),
  app('pulse', 'Pulse', 'fitness', 'heart', '#D93025'),
  app('chess', 'Chess', 'games', 'knight', '#795548'),
  app('puzzle', 'Puzzle', 'games', 'puzzle', '#12B5CB'),
  app('vault', 'Vault', 'banking', 'coin', '#0B8043'),
  app('wallet', 'Wallet', 'banking', 'card', '#1A237E'),
  app('chatter', 'Chatter', 'messaging', 'bubble', '#25A244'),
  app('pigeon', 'Pigeon', 'messaging', 'bird', '#229ED9'),
  app('maps', 'Maps', 'maps', 'pin', '#34A853'),
  app('atlas', 'Atlas', 'maps', 'map', '#00796B'),
  app('notes', 'Notes', 'notes', 'pencil', '#F4B400'),
  app('jotter', 'Jotter', 'notes', 'jot', '#8D6E63'),
  app('shop', 'Shop', 'shopping', 'bag', '#FF7043'),
  app('cart', 'Cart', 'shopping', 'cart', '#7CB342'),
  app('calendar', 'Calendar', 'calendar', 'calendar', '#4285F4'),
  app('weather', 'Weather', 'weather', 'sun', '#FBBC04'),
  app('clock', 'Clock', 'clock', 'clock', '#455A64'),
  app('calculator', 'Calculator', 'calculator', 'calc', '#607D8B'),
  app('mail', 'Mail', 'mail', 'envelope', '#EA4335'),
  app('files', 'Files', 'files', 'folder', '#1E88E5'),
];

// Dock icons carry no label (as on most launchers), so "Open Camera" is an icon-only instruction.
const DOCK_APPS: readonly AppDef[] = [
  app('phone', 'Phone', 'phone', 'phone', '#0F9D58'),
  app('messages', 'Messages', 'messaging', 'bubble', '#1A73E8'),
  app('browser', 'Browser', 'browser', 'globe', '#E8710A'),
  app('camera', 'Camera', 'camera', 'camera', '#546E7A'),
];

const CATEGORIES = [...new Set(GRID_APPS.map((a) => a.category))];
// "Open my <noun> app" per category; the noun never equals an app label, so a label oracle cannot shortcut it.
const MY_APP_NOUNS: Readonly<Record<string, string>> = {
  music: 'music',
  photos: 'photo',
  video: 'video',
  news: 'news',
  fitness: 'fitness',
  games: 'game',
  banking: 'banking',
};
const MY_APP_CATEGORIES = Object.keys(MY_APP_NOUNS);
const APP_BY_ID = new Map([...GRID_APPS, ...DOCK_APPS].map((a) => [a.id, a]));

interface ItemDef {
  id: string;
  label: string;
  glyph: string;
  color: string;
}

const item = (id: string, label: string, glyph: string, color: string): ItemDef => ({ id, label, glyph, color });

const TILES: readonly ItemDef[] = [
  item('wifi', 'Wi-Fi', 'wifi', '#1A73E8'),
  item('bluetooth', 'Bluetooth', 'bluetooth', '#1A73E8'),
  item('mobile_data', 'Mobile data', 'signal', '#1A73E8'),
  item('airplane', 'Airplane mode', 'plane', '#1A73E8'),
  item('flashlight', 'Flashlight', 'torch', '#1A73E8'),
  item('location', 'Location', 'pin', '#1A73E8'),
  item('dnd', 'Do not disturb', 'dnd', '#1A73E8'),
  item('hotspot', 'Hotspot', 'hotspot', '#1A73E8'),
];

const SHARE_TARGETS: readonly ItemDef[] = [
  item('mail', 'Mail', 'envelope', '#EA4335'),
  item('messages', 'Messages', 'bubble', '#1A73E8'),
  item('chatter', 'Chatter', 'bubble', '#25A244'),
  item('pigeon', 'Pigeon', 'bird', '#229ED9'),
  item('drive', 'Drive', 'drive', '#F4B400'),
  item('notes', 'Notes', 'pencil', '#F9AB00'),
  item('copy', 'Copy link', 'copy', '#5F6368'),
  item('nearby', 'Nearby', 'nearby', '#12B5CB'),
];

const CONTACTS: readonly ItemDef[] = [
  item('alex', 'Alex', 'avatar', '#E8710A'),
  item('sam', 'Sam', 'avatar', '#1A73E8'),
  item('mia', 'Mia', 'avatar', '#E52592'),
  item('leo', 'Leo', 'avatar', '#188038'),
  item('zoe', 'Zoe', 'avatar', '#A142F4'),
  item('ben', 'Ben', 'avatar', '#12B5CB'),
  item('nora', 'Nora', 'avatar', '#F9AB00'),
  item('mom', 'Mom', 'avatar', '#D93025'),
  item('dad', 'Dad', 'avatar', '#5F6368'),
];
const FAMILY = new Set(['mom', 'dad']);

const SETTINGS: readonly (ItemDef & { subtitle: string })[] = [
  { ...item('network', 'Network & internet', 'wifi', '#1A73E8'), subtitle: 'Wi-Fi, mobile, hotspot' },
  { ...item('devices', 'Connected devices', 'devices', '#188038'), subtitle: 'Bluetooth, pairing' },
  { ...item('apps', 'Apps', 'grid', '#E8710A'), subtitle: 'Recent apps, default apps' },
  { ...item('notifications', 'Notifications', 'bell', '#A142F4'), subtitle: 'History, conversations' },
  { ...item('battery', 'Battery', 'battery', '#0B8043'), subtitle: 'Usage, battery saver' },
  { ...item('storage', 'Storage', 'storage', '#12B5CB'), subtitle: 'Free up space' },
  { ...item('sound', 'Sound & vibration', 'sound', '#E52592'), subtitle: 'Volume, ringtone' },
  { ...item('display', 'Display', 'display', '#F9AB00'), subtitle: 'Dark theme, font size' },
  { ...item('accessibility', 'Accessibility', 'access', '#1A237E'), subtitle: 'Screen readers, magnification' },
  { ...item('security', 'Security & privacy', 'shield', '#D93025'), subtitle: 'Screen lock, permissions' },
  { ...item('location', 'Location', 'pin', '#34A853'), subtitle: 'App access to location' },
  { ...item('about', 'About phone', 'info', '#5F6368'), subtitle: 'Model, software version' },
];

const DIALOGS = [
  { title: 'Delete 3 photos?', body: ['These photos will be removed', 'from all your devices.'], confirm: 'Delete' },
  { title: 'Discard draft?', body: ['Your message has not been', 'sent yet.'], confirm: 'Discard' },
  { title: 'Turn off backup?', body: ['New photos will not be', 'backed up.'], confirm: 'Turn off' },
  { title: 'Log out?', body: ['You will need your password', 'to sign in again.'], confirm: 'Log out' },
] as const;

const PREVIEWS = [
  'See you at 7?',
  'Sent a photo',
  'Haha yes',
  'Call me when you can',
  'Thanks!',
  'On my way',
  'Did you see this?',
  'Love it',
  'Running late, sorry',
  'Sounds good',
];

const ACCENTS = ['#1A73E8', '#D93025', '#188038', '#E8710A', '#A142F4', '#12B5CB', '#E52592', '#5F35B5'];
const FONT_SCALES = [0.9, 1, 1.1, 1.25];

interface Theme {
  bg: string;
  surface: string;
  surface2: string;
  text: string;
  sub: string;
}

const LIGHT: Theme = { bg: '#F4F5F7', surface: '#FFFFFF', surface2: '#E3E5E9', text: '#1B1C1F', sub: '#5F6368' };
const DARK: Theme = { bg: '#101114', surface: '#1F2126', surface2: '#30333A', text: '#F1F2F4', sub: '#A7ABB3' };

// ---------------------------------------------------------------------------------------------------------
// Users

export type ScreenName = 'quick_settings' | 'home' | 'chat_list' | 'share_sheet' | 'confirm_dialog' | 'settings_list';
export type SynthKind = 'explicit' | 'intent' | 'icon_only';

export interface SynthUser {
  id: string;
  dark: boolean;
  accent: string;
  fontScale: number;
  /** The home grid shows icons without labels. */
  hideLabels: boolean;
  /** Home grid rows (4 columns). */
  rows: 5 | 6;
  /** App ids in home-grid cell order. */
  homeApps: string[];
  dock: string[];
  tiles: string[];
  shareTargets: string[];
  contacts: string[];
  settings: string[];
  /** The dialog's confirm button sits left of Cancel. */
  confirmFirst: boolean;
  /** Handedness offset as a fraction of min(bbox width, height), each axis in [-0.18, 0.18]. */
  tapBias: { x: number; y: number };
  /** Favourite element id per ambiguous template (intents and "my <category> app"). */
  favourites: Record<string, string>;
}

interface IntentDef {
  template: string;
  screen: ScreenName;
  text: string;
  candidates: (u: SynthUser) => string[];
}

const appsWhere = (u: SynthUser, category: string): string[] =>
  [...u.homeApps, ...u.dock].filter((id) => APP_BY_ID.get(id)?.category === category).map((id) => `app.${id}`);

const INTENTS: readonly IntentDef[] = [
  { template: 'intent.get_online', screen: 'quick_settings', text: 'Get me online', candidates: () => ['tile.wifi', 'tile.mobile_data'] },
  { template: 'intent.silence', screen: 'quick_settings', text: 'Silence my phone', candidates: () => ['tile.dnd', 'tile.airplane'] },
  {
    template: 'intent.save_battery',
    screen: 'quick_settings',
    text: 'Save some battery',
    candidates: () => ['tile.location', 'tile.bluetooth', 'tile.hotspot'],
  },
  { template: 'intent.message_alex', screen: 'home', text: 'Message Alex', candidates: (u) => appsWhere(u, 'messaging') },
  { template: 'intent.route_home', screen: 'home', text: 'Find a route home', candidates: (u) => appsWhere(u, 'maps') },
  { template: 'intent.write_down', screen: 'home', text: 'Write this down', candidates: (u) => appsWhere(u, 'notes') },
  { template: 'intent.order_coffee', screen: 'home', text: 'Order more coffee', candidates: (u) => appsWhere(u, 'shopping') },
  {
    template: 'intent.best_friend',
    screen: 'chat_list',
    text: 'Text my best friend',
    candidates: (u) => u.contacts.filter((c) => !FAMILY.has(c)).map((c) => `chat.${c}`),
  },
  {
    template: 'intent.family',
    screen: 'chat_list',
    text: 'Message my family',
    candidates: (u) => u.contacts.filter((c) => FAMILY.has(c)).map((c) => `chat.${c}`),
  },
  { template: 'intent.share_this', screen: 'share_sheet', text: 'Share this', candidates: (u) => u.shareTargets.map((s) => `share.${s}`) },
  {
    template: 'intent.send_friend',
    screen: 'share_sheet',
    text: 'Send this to a friend',
    candidates: () => ['share.messages', 'share.chatter', 'share.pigeon'],
  },
  { template: 'intent.dismiss', screen: 'confirm_dialog', text: 'Dismiss this', candidates: () => ['dialog.cancel', 'dialog.close'] },
  {
    template: 'intent.bigger_text',
    screen: 'settings_list',
    text: 'Make the text bigger',
    candidates: () => ['settings.display', 'settings.accessibility'],
  },
  {
    template: 'intent.free_space',
    screen: 'settings_list',
    text: 'Free up some space',
    candidates: () => ['settings.storage', 'settings.apps'],
  },
  {
    template: 'intent.quiet_nights',
    screen: 'settings_list',
    text: 'Stop alerts at night',
    candidates: () => ['settings.notifications', 'settings.sound'],
  },
];

export function synthUser(config: SynthConfig, user: string): SynthUser {
  const rng = rngFor(`${config.seed}|user|${user}`);
  const dark = rng.float() < 0.4;
  const accent = rng.pick(ACCENTS);
  const fontScale = rng.pick(FONT_SCALES);
  const hideLabels = rng.float() < 0.3;
  const rows = rng.float() < 0.5 ? 5 : 6;
  // Every category keeps at least one app on the grid, so every intent has a candidate.
  const kept = CATEGORIES.map((cat) => rng.pick(GRID_APPS.filter((a) => a.category === cat)).id);
  const rest = rng.shuffle(GRID_APPS.filter((a) => !kept.includes(a.id)).map((a) => a.id));
  const homeApps = rng.shuffle([...kept, ...rest.slice(0, rows * 4 - kept.length)]);
  const profile: SynthUser = {
    id: user,
    dark,
    accent,
    fontScale,
    hideLabels,
    rows,
    homeApps,
    dock: rng.shuffle(DOCK_APPS.map((a) => a.id)),
    tiles: rng.shuffle(TILES.map((t) => t.id)),
    shareTargets: rng.shuffle(SHARE_TARGETS.map((s) => s.id)),
    contacts: rng.shuffle(CONTACTS.map((c) => c.id)),
    settings: rng.shuffle(SETTINGS.map((s) => s.id)),
    confirmFirst: rng.float() < 0.5,
    tapBias: { x: rng.float() * 0.36 - 0.18, y: rng.float() * 0.36 - 0.18 },
    favourites: {},
  };
  for (const intent of INTENTS) profile.favourites[intent.template] = rng.pick(intent.candidates(profile));
  for (const cat of MY_APP_CATEGORIES) profile.favourites[`icon.my_${cat}`] = rng.pick(appsWhere(profile, cat));
  return profile;
}

// ---------------------------------------------------------------------------------------------------------
// SVG drawing on a 1080x2400 design grid, scaled to the canvas. Every emitted coordinate is an integer
// and attributes are written in a fixed order, so the SVG text is byte-stable.

export interface SynthElement {
  id: string;
  role: string;
  label: string;
  /** Whether the label is drawn on screen (a label oracle may only use visible ones). */
  labelVisible: boolean;
  icon: string;
  color: string;
  /** [x1, y1, x2, y2] in canvas pixels. */
  bbox: [number, number, number, number];
}

export interface SynthScreen {
  name: ScreenName;
  elements: SynthElement[];
  svg: string;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

class Canvas {
  private readonly parts: string[] = [];
  readonly elements: SynthElement[] = [];
  private readonly sx: number;
  private readonly sy: number;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.sx = width / 1080;
    this.sy = height / 2400;
  }

  x(v: number): number {
    return Math.round(v * this.sx);
  }

  y(v: number): number {
    return Math.round(v * this.sy);
  }

  size(v: number): number {
    return Math.max(1, Math.round(v * Math.min(this.sx, this.sy)));
  }

  raw(markup: string): void {
    this.parts.push(markup);
  }

  rect(x1: number, y1: number, x2: number, y2: number, fill: string, rx = 0, opacity = 1): void {
    const [X1, Y1] = [this.x(x1), this.y(y1)];
    const round = rx > 0 ? ` rx="${this.size(rx)}"` : '';
    const alpha = opacity < 1 ? ` fill-opacity="${opacity.toFixed(2)}"` : '';
    this.parts.push(
      `<rect x="${X1}" y="${Y1}" width="${this.x(x2) - X1}" height="${this.y(y2) - Y1}"${round} fill="${fill}"${alpha}/>`,
    );
  }

  circle(cx: number, cy: number, r: number, fill: string): void {
    this.parts.push(`<circle cx="${this.x(cx)}" cy="${this.y(cy)}" r="${this.size(r)}" fill="${fill}"/>`);
  }

  /** Text at baseline (x, y); the size shrinks so that roughly `room` design units hold it. */
  text(x: number, y: number, size: number, fill: string, text: string, opts: { anchor?: string; bold?: boolean; room?: number } = {}): void {
    // DejaVu Sans averages about 0.6 em per character, 0.67 em in bold.
    const em = opts.bold ? 0.67 : 0.6;
    const fitted = opts.room ? Math.min(size, opts.room / (em * Math.max(1, text.length))) : size;
    const anchor = opts.anchor ? ` text-anchor="${opts.anchor}"` : '';
    const weight = opts.bold ? ' font-weight="bold"' : '';
    this.parts.push(
      `<text x="${this.x(x)}" y="${this.y(y)}" font-family="DejaVu Sans, sans-serif" font-size="${this.size(fitted)}"${weight}${anchor} fill="${fill}">${escapeXml(text)}</text>`,
    );
  }

  glyph(name: string, cx: number, cy: number, size: number, fill: string): void {
    const d = GLYPHS[name];
    if (d === undefined) throw new Error(`unknown glyph '${name}'`);
    const px = this.size(size);
    const k = (px / 24).toFixed(3);
    this.parts.push(
      `<path d="${d}" fill="${fill}" fill-rule="evenodd" transform="translate(${this.x(cx) - Math.round(px / 2)} ${this.y(cy) - Math.round(px / 2)}) scale(${k})"/>`,
    );
  }

  element(id: string, role: string, label: string, labelVisible: boolean, icon: string, color: string, box: [number, number, number, number]): void {
    this.elements.push({
      id,
      role,
      label,
      labelVisible,
      icon,
      color,
      bbox: [this.x(box[0]), this.y(box[1]), this.x(box[2]), this.y(box[3])],
    });
  }

  svg(): string {
    return (
      `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}" viewBox="0 0 ${this.width} ${this.height}">` +
      this.parts.join('') +
      '</svg>\n'
    );
  }
}

interface DrawContext {
  c: Canvas;
  u: SynthUser;
  t: Theme;
  rng: Rng;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

function statusBar({ c, t, rng }: DrawContext, color = t.text): void {
  c.text(60, 62, 34, color, `${rng.int(7, 22)}:${pad2(rng.int(0, 59))}`);
  c.glyph('wifi', 900, 50, 40, color);
  c.glyph('signal', 955, 50, 40, color);
  c.rect(990, 34, 1030, 66, color, 6);
}

function homeIndicator({ c, t }: DrawContext): void {
  c.rect(390, 2356, 690, 2368, t.text, 6, 0.5);
}

function drawQuickSettings(ctx: DrawContext): void {
  const { c, u, t, rng } = ctx;
  c.rect(0, 0, 1080, 2400, t.bg);
  statusBar(ctx);
  c.text(60, 230, 110, t.text, `${rng.int(7, 22)}:${pad2(rng.int(0, 59))}`);
  c.text(60, 300, 40, t.sub, rng.pick(['Mon, 3 March', 'Tue, 11 March', 'Fri, 21 March', 'Sun, 30 March']));
  c.rect(60, 360, 1020, 430, t.surface2, 35);
  c.rect(60, 360, 60 + rng.int(200, 900), 430, u.accent, 35, 0.85);
  c.glyph('sun', 110, 395, 44, '#FFFFFF');
  const dy = rng.int(-12, 12);
  u.tiles.forEach((tileId, i) => {
    const tile = TILES.find((d) => d.id === tileId)!;
    const x = 60 + (i % 2) * 498;
    const y = 480 + Math.floor(i / 2) * 236 + dy;
    const on = rng.float() < 0.5;
    const fill = on ? u.accent : t.surface2;
    const fg = on ? '#FFFFFF' : t.text;
    c.rect(x, y, x + 462, y + 200, fill, 48);
    c.circle(x + 80, y + 100, 48, on ? '#FFFFFF' : t.surface);
    c.glyph(tile.glyph, x + 80, y + 100, 56, on ? u.accent : t.text);
    c.text(x + 150, y + 92, 36 * u.fontScale, fg, tile.label, { bold: true, room: 290 });
    c.text(x + 150, y + 145, 30 * u.fontScale, fg, on ? 'On' : 'Off');
    c.element(`tile.${tile.id}`, 'toggle', tile.label, true, tile.glyph, fill, [x, y, x + 462, y + 200]);
  });
  c.rect(60, 1480, 1020, 1760, t.surface2, 48);
  c.glyph('note', 150, 1620, 80, u.accent);
  c.text(230, 1600, 38, t.text, 'Nothing playing', { bold: true });
  c.text(230, 1660, 30, t.sub, 'Tap to resume');
  c.text(540, 1900, 34, t.sub, 'No notifications', { anchor: 'middle' });
  homeIndicator(ctx);
}

function drawHome(ctx: DrawContext): void {
  const { c, u, t, rng } = ctx;
  c.raw(
    `<defs><linearGradient id="wp" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${u.accent}"/><stop offset="1" stop-color="${t.bg}"/></linearGradient></defs>`,
  );
  c.raw(`<rect x="0" y="0" width="${c.width}" height="${c.height}" fill="url(#wp)"/>`);
  statusBar(ctx, '#FFFFFF');
  c.text(540, 300, 150, '#FFFFFF', `${rng.int(7, 22)}:${pad2(rng.int(0, 59))}`, { anchor: 'middle' });
  c.text(540, 380, 42, '#FFFFFF', rng.pick(['Monday', 'Tuesday', 'Friday', 'Sunday']), { anchor: 'middle' });
  // Small per-sample jitter of the whole grid keeps the layout per user while not pixel-identical.
  const dx = rng.int(-8, 8);
  const dy = rng.int(-8, 8);
  u.homeApps.forEach((appId, i) => {
    const a = APP_BY_ID.get(appId)!;
    const x = 40 + (i % 4) * 250 + dx;
    const y = 470 + Math.floor(i / 4) * 270 + dy;
    c.rect(x + 50, y + 25, x + 200, y + 175, a.color, 38);
    c.glyph(a.glyph, x + 125, y + 100, 90, '#FFFFFF');
    if (!u.hideLabels) c.text(x + 125, y + 220, 32 * u.fontScale, t.text, a.label, { anchor: 'middle', room: 230 });
    c.element(`app.${a.id}`, 'app_icon', a.label, !u.hideLabels, a.glyph, a.color, [x + 10, y + 10, x + 240, y + 255]);
  });
  c.rect(40, 2140, 1040, 2330, t.surface, 60, 0.85);
  u.dock.forEach((appId, k) => {
    const a = APP_BY_ID.get(appId)!;
    const cx = 165 + k * 250;
    c.rect(cx - 70, 2165, cx + 70, 2305, a.color, 38);
    c.glyph(a.glyph, cx, 2235, 84, '#FFFFFF');
    c.element(`app.${a.id}`, 'app_icon', a.label, false, a.glyph, a.color, [cx - 110, 2150, cx + 110, 2320]);
  });
  homeIndicator(ctx);
}

function drawChatList(ctx: DrawContext): void {
  const { c, u, t, rng } = ctx;
  c.rect(0, 0, 1080, 2400, t.bg);
  statusBar(ctx);
  c.text(60, 215, 64, t.text, 'Chats', { bold: true });
  c.glyph('search', 960, 195, 64, t.text);
  c.element('chat.search', 'button', 'Search', false, 'search', t.text, [900, 135, 1020, 255]);
  const dy = rng.int(-6, 6);
  let minutes = rng.int(600, 1300);
  u.contacts.forEach((contactId, k) => {
    const contact = CONTACTS.find((d) => d.id === contactId)!;
    const y = 300 + k * 200 + dy;
    c.circle(130, y + 100, 64, contact.color);
    c.text(130, y + 120, 56, '#FFFFFF', contact.label[0], { anchor: 'middle', bold: true });
    c.text(230, y + 85, 44 * u.fontScale, t.text, contact.label, { bold: true });
    c.text(230, y + 145, 34 * u.fontScale, t.sub, rng.pick(PREVIEWS), { room: 620 });
    c.text(1020, y + 85, 30, t.sub, `${pad2(Math.floor(minutes / 60))}:${pad2(minutes % 60)}`, { anchor: 'end' });
    minutes -= rng.int(3, 50);
    if (k < u.contacts.length - 1) c.rect(230, y + 198, 1080, y + 200, t.surface2);
    c.element(`chat.${contact.id}`, 'list_item', contact.label, true, 'avatar', contact.color, [0, y + 4, 1080, y + 196]);
  });
  c.rect(620, 2160, 1020, 2300, u.accent, 50);
  c.glyph('plus', 690, 2230, 56, '#FFFFFF');
  c.text(740, 2245, 40 * u.fontScale, '#FFFFFF', 'New chat', { bold: true, room: 260 });
  c.element('chat.new', 'button', 'New chat', true, 'plus', u.accent, [620, 2160, 1020, 2300]);
  homeIndicator(ctx);
}

function drawShareSheet(ctx: DrawContext): void {
  const { c, u, t, rng } = ctx;
  c.rect(0, 0, 1080, 2400, t.bg);
  statusBar(ctx);
  const photo = rng.pick(ACCENTS);
  c.rect(60, 200, 1020, 1100, photo, 24);
  c.raw(`<path d="M${c.x(60)} ${c.y(1100)}L${c.x(400)} ${c.y(700)}L${c.x(640)} ${c.y(950)}L${c.x(800)} ${c.y(800)}L${c.x(1020)} ${c.y(1100)}Z" fill="#FFFFFF" fill-opacity="0.35"/>`);
  c.rect(0, 0, 1080, 2400, '#000000', 0, 0.45);
  c.rect(0, 1250, 1080, 2400, t.surface, 48);
  c.rect(490, 1280, 590, 1292, t.sub, 6);
  c.text(60, 1370, 48, t.text, 'Share', { bold: true });
  c.rect(60, 1410, 190, 1540, photo, 16);
  c.text(220, 1465, 36, t.text, `IMG_${rng.int(1000, 9999)}.jpg`);
  c.text(220, 1515, 30, t.sub, '1 photo');
  const dx = rng.int(-6, 6);
  u.shareTargets.forEach((targetId, i) => {
    const target = SHARE_TARGETS.find((d) => d.id === targetId)!;
    const x = 60 + (i % 4) * 240 + dx;
    const y = 1600 + Math.floor(i / 4) * 280;
    c.circle(x + 120, y + 90, 66, target.color);
    c.glyph(target.glyph, x + 120, y + 90, 72, '#FFFFFF');
    c.text(x + 120, y + 210, 30 * u.fontScale, t.text, target.label, { anchor: 'middle', room: 220 });
    c.element(`share.${target.id}`, 'share_target', target.label, true, target.glyph, target.color, [x + 8, y + 5, x + 232, y + 270]);
  });
  homeIndicator(ctx);
}

function drawConfirmDialog(ctx: DrawContext): { confirm: string } {
  const { c, u, t, rng } = ctx;
  c.rect(0, 0, 1080, 2400, t.bg);
  statusBar(ctx);
  c.rect(0, 90, 1080, 260, t.surface2);
  for (let k = 0; k < 8; k++) {
    c.rect(60, 320 + k * 240, 240, 500 + k * 240, t.surface2, 16);
    c.rect(280, 360 + k * 240, 280 + rng.int(300, 700), 400 + k * 240, t.surface2, 12);
  }
  c.rect(0, 0, 1080, 2400, '#000000', 0, 0.5);
  const dialog = rng.pick(DIALOGS);
  c.rect(90, 820, 990, 1480, t.surface, 40);
  c.text(150, 960, 48 * u.fontScale, t.text, dialog.title, { bold: true, room: 700 });
  dialog.body.forEach((line, k) => c.text(150, 1040 + k * 55, 34 * u.fontScale, t.sub, line, { room: 760 }));
  c.glyph('close', 925, 895, 44, t.sub);
  c.element('dialog.close', 'button', 'Close', false, 'close', t.sub, [880, 850, 970, 940]);
  const slots: [number, number][] = [
    [430, 680],
    [710, 950],
  ];
  const order = u.confirmFirst ? ['confirm', 'cancel'] : ['cancel', 'confirm'];
  order.forEach((which, k) => {
    const [x1, x2] = slots[k];
    const label = which === 'confirm' ? dialog.confirm : 'Cancel';
    if (which === 'confirm') c.rect(x1, 1340, x2, 1440, u.accent, 50);
    const fg = which === 'confirm' ? '#FFFFFF' : u.accent;
    c.text((x1 + x2) / 2, 1405, 36 * u.fontScale, fg, label, { anchor: 'middle', bold: true, room: 220 });
    c.element(`dialog.${which}`, 'button', label, true, 'none', which === 'confirm' ? u.accent : t.surface, [x1, 1340, x2, 1440]);
  });
  return { confirm: dialog.confirm };
}

function drawSettingsList(ctx: DrawContext): void {
  const { c, u, t, rng } = ctx;
  c.rect(0, 0, 1080, 2400, t.bg);
  statusBar(ctx);
  c.text(60, 220, 64, t.text, 'Settings', { bold: true });
  c.rect(40, 270, 1040, 390, t.surface2, 60);
  c.glyph('search', 110, 330, 48, t.sub);
  c.text(160, 345, 38 * u.fontScale, t.sub, 'Search settings');
  c.element('settings.search', 'search_field', 'Search settings', true, 'search', t.surface2, [40, 270, 1040, 390]);
  const dy = rng.int(-6, 6);
  u.settings.forEach((settingId, k) => {
    const s = SETTINGS.find((d) => d.id === settingId)!;
    const y = 430 + k * 150 + dy;
    c.circle(110, y + 75, 40, s.color);
    c.glyph(s.glyph, 110, y + 75, 48, '#FFFFFF');
    c.text(190, y + 65, 40 * u.fontScale, t.text, s.label, { room: 820 });
    c.text(190, y + 115, 30 * u.fontScale, t.sub, s.subtitle, { room: 820 });
    c.element(`settings.${s.id}`, 'list_item', s.label, true, s.glyph, s.color, [0, y + 3, 1080, y + 147]);
  });
  homeIndicator(ctx);
}

// ---------------------------------------------------------------------------------------------------------
// Samples

export interface SynthItem {
  sample: Sample;
  svg: string;
  screen: SynthScreen;
}

const EXPLICIT_TEMPLATES: Record<ScreenName, (el: SynthElement) => { template: string; text: string }> = {
  quick_settings: (el) => ({ template: 'explicit.tile', text: `Tap the ${el.label} tile` }),
  home: (el) => ({ template: 'explicit.app', text: `Open ${el.label}` }),
  chat_list: (el) =>
    el.role === 'list_item'
      ? { template: 'explicit.chat', text: `Open the chat with ${el.label}` }
      : { template: 'explicit.button', text: `Tap ${el.label}` },
  share_sheet: (el) => ({ template: 'explicit.share', text: `Share via ${el.label}` }),
  confirm_dialog: (el) => ({ template: 'explicit.button', text: `Tap ${el.label}` }),
  settings_list: (el) =>
    el.role === 'list_item'
      ? { template: 'explicit.settings', text: `Open ${el.label}` }
      : { template: 'explicit.button', text: `Tap ${el.label}` },
};

const SCREENS: readonly ScreenName[] = ['quick_settings', 'home', 'chat_list', 'share_sheet', 'confirm_dialog', 'settings_list'];

function drawScreen(name: ScreenName, config: SynthConfig, u: SynthUser, rng: Rng): SynthScreen {
  const c = new Canvas(config.width, config.height);
  const ctx: DrawContext = { c, u, t: u.dark ? DARK : LIGHT, rng };
  if (name === 'quick_settings') drawQuickSettings(ctx);
  else if (name === 'home') drawHome(ctx);
  else if (name === 'chat_list') drawChatList(ctx);
  else if (name === 'share_sheet') drawShareSheet(ctx);
  else if (name === 'confirm_dialog') drawConfirmDialog(ctx);
  else drawSettingsList(ctx);
  return { name, elements: c.elements, svg: c.svg() };
}

/** The favourite with probability P_PREF, otherwise one of the other candidates uniformly. */
function choosePreferred(rng: Rng, candidates: string[], favourite: string): string {
  const others = candidates.filter((id) => id !== favourite);
  return others.length === 0 || rng.float() < P_PREF ? favourite : rng.pick(others);
}

export function sampleImagePath(user: string, index: number): string {
  return `images/${user}/${String(index).padStart(4, '0')}.png`;
}

/** Generates sample `index` of `user` on its own; `profile` may be passed to skip recomputing the user. */
export function synthSample(config: SynthConfig, user: string, index: number, profile?: SynthUser): SynthItem {
  const u = profile ?? synthUser(config, user);
  if (u.id !== user) throw new Error(`profile is for user ${u.id}, not ${user}`);
  const rng = rngFor(`${config.seed}|${user}|${index}`);
  const roll = rng.float();
  const kind: SynthKind = roll < 0.4 ? 'explicit' : roll < 0.8 ? 'intent' : 'icon_only';

  let screen: SynthScreen;
  let template: string;
  let instruction: string;
  let candidates: string[];
  let targetId: string;
  if (kind === 'explicit') {
    // A hidden-label home grid has no visible label to name, so those users get no explicit home samples.
    const screens = u.hideLabels ? SCREENS.filter((s) => s !== 'home') : SCREENS;
    screen = drawScreen(rng.pick(screens), config, u, rng);
    const el = rng.pick(screen.elements.filter((e) => e.labelVisible));
    ({ template, text: instruction } = EXPLICIT_TEMPLATES[screen.name](el));
    candidates = [el.id];
    targetId = el.id;
  } else if (kind === 'intent') {
    const intent = rng.pick(INTENTS);
    screen = drawScreen(intent.screen, config, u, rng);
    template = intent.template;
    instruction = intent.text;
    candidates = intent.candidates(u);
    targetId = choosePreferred(rng, candidates, u.favourites[template]);
  } else {
    screen = drawScreen('home', config, u, rng);
    const roll2 = rng.float();
    const family = u.hideLabels ? (roll2 < 0.4 ? 'my' : roll2 < 0.8 ? 'hidden' : 'dock') : roll2 < 0.75 ? 'my' : 'dock';
    if (family === 'my') {
      const cat = rng.pick(MY_APP_CATEGORIES);
      template = `icon.my_${cat}`;
      instruction = `Open my ${MY_APP_NOUNS[cat]} app`;
      candidates = appsWhere(u, cat);
      targetId = choosePreferred(rng, candidates, u.favourites[template]);
    } else {
      const pool = family === 'hidden' ? u.homeApps : u.dock;
      const a = APP_BY_ID.get(rng.pick(pool))!;
      template = family === 'hidden' ? 'icon.hidden_label' : 'icon.dock';
      instruction = `Open ${a.label}`;
      candidates = [`app.${a.id}`];
      targetId = candidates[0];
    }
  }

  const el = screen.elements.find((e) => e.id === targetId);
  if (el === undefined) throw new Error(`target ${targetId} is not on screen ${screen.name}`);
  const [x1, y1, x2, y2] = el.bbox;
  // Tap = centre + (user bias + per-sample noise) * min(w, h): at most 0.24 of either side, so inside the bbox.
  const unit = Math.min(x2 - x1, y2 - y1);
  const tx = Math.round((x1 + x2) / 2 + (u.tapBias.x + rng.float() * 0.12 - 0.06) * unit);
  const ty = Math.round((y1 + y2) / 2 + (u.tapBias.y + rng.float() * 0.12 - 0.06) * unit);
  const svgSha = createHash('sha256').update(screen.svg).digest('hex');
  const local = String(index).padStart(4, '0');
  const sample: Sample = {
    id: `synthetic/${user}/${local}`,
    source: 'synthetic',
    user,
    episode: local,
    step: 0,
    image: sampleImagePath(user, index),
    width: config.width,
    height: config.height,
    instruction,
    referring: el.label,
    action_type: 'click',
    target: { x: tx, y: ty },
    bbox: [x1, y1, x2, y2],
    bbox_source: 'synthetic',
    meta: {
      template,
      kind,
      screen: screen.name,
      target_id: el.id,
      candidates,
      svg_sha256: svgSha,
    },
  };
  return { sample, svg: screen.svg, screen };
}

/** All samples of the config, ordered by user (as an integer) then index. */
export function* synthSamples(config: SynthConfig): Generator<SynthItem> {
  for (const user of config.users) {
    const profile = synthUser(config, user);
    const count = userSampleCount(config, user);
    for (let index = 0; index < count; index++) yield synthSample(config, user, index, profile);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Writing the dataset

export interface WriteSynthOptions extends SynthOptions {
  /** Rasterise images/<user>/<index>.png (default true). */
  images?: boolean;
  /** Parallel rasterisations (default: available parallelism). */
  concurrency?: number;
  /** Replace a non-empty output directory. */
  force?: boolean;
}

export interface SynthDatasetInfo extends DatasetInfo {
  synth: {
    version: string;
    seed: string;
    width: number;
    height: number;
    samples_per_user: { min: number; max: number };
    personal: string[];
    global: string[];
    p_pref: number;
    images: boolean;
  };
}

async function isNonEmptyDir(dir: string): Promise<boolean | undefined> {
  try {
    const s = await stat(dir);
    if (!s.isDirectory()) throw new Error(`output path ${dir} exists and is not a directory`);
    return (await readdir(dir)).length > 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function runPool(count: number, concurrency: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/**
 * Writes the dataset to `out` (dataset.json, manifest.jsonl, images/). Everything is written into a temporary
 * sibling directory first and renamed into place, so `out` never holds a partial dataset.
 */
export async function writeSynthDataset(out: string, options: WriteSynthOptions = {}): Promise<SynthDatasetInfo> {
  const config = resolveSynthConfig(options);
  const concurrency = options.concurrency ?? os.availableParallelism();
  checkInt('concurrency', concurrency, 1);
  const images = options.images ?? true;
  const target = path.resolve(out);
  const existing = await isNonEmptyDir(target);
  if (existing && !options.force) throw new Error(`output directory ${out} is not empty (force replaces it)`);

  await mkdir(path.dirname(target), { recursive: true });
  const tmp = await mkdtemp(path.join(path.dirname(target), `.${path.basename(target)}.tmp-`));
  try {
    const lines: string[] = [];
    const svgs: { image: string; svg: string }[] = [];
    const counts: Record<string, number> = { samples: 0, explicit: 0, intent: 0, icon_only: 0 };
    for (const { sample, svg } of synthSamples(config)) {
      lines.push(JSON.stringify(sample));
      svgs.push({ image: sample.image, svg });
      counts.samples++;
      counts[sample.meta!.kind as SynthKind]++;
    }
    const info: SynthDatasetInfo = {
      schema: 'gg-sample/1',
      name: 'synthphone',
      source: 'synthetic',
      created_by: SYNTH_VERSION,
      coord_space: 'pixel',
      users: config.users,
      counts,
      notes: 'Deterministic synthetic phone screens (datasets.md §6); SVG text and manifest are byte-stable, PNG bytes depend on fonts.',
      synth: {
        version: SYNTH_VERSION,
        seed: config.seed,
        width: config.width,
        height: config.height,
        samples_per_user: config.samplesPerUser,
        personal: config.personal,
        global: config.global,
        p_pref: P_PREF,
        images,
      },
    };
    await writeFile(path.join(tmp, 'dataset.json'), `${JSON.stringify(info, null, 2)}\n`);
    await writeFile(path.join(tmp, 'manifest.jsonl'), lines.length ? `${lines.join('\n')}\n` : '');
    if (images) {
      for (const user of config.users) await mkdir(path.join(tmp, 'images', user), { recursive: true });
      await runPool(svgs.length, concurrency, async (i) => {
        await sharp(Buffer.from(svgs[i].svg)).png().toFile(path.join(tmp, svgs[i].image));
      });
    }
    if (existing === undefined) {
      await rename(tmp, target);
    } else if (!existing) {
      await rmdir(target);
      await rename(tmp, target);
    } else {
      const old = `${tmp}-old`;
      await rename(target, old);
      await rename(tmp, target);
      await rm(old, { recursive: true, force: true });
    }
    return info;
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  }
}
