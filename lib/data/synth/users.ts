// Synthetic users: each one's layout (home grid, dock, tile, share, contact and settings order), theme, font scale,
// hidden labels, dialog button order, tap bias and favourite target per ambiguous instruction, all drawn from the
// seed. This is the personalization signal: a per-user prior can learn it and a global one cannot.
import { ACCENTS, APP_BY_ID, CATEGORIES, CONTACTS, DOCK_APPS, FAMILY, FONT_SCALES, GRID_APPS, MY_APP_CATEGORIES, SETTINGS, SHARE_TARGETS, TILES, type ScreenName } from './catalogue.js';
import type { SynthConfig } from './config.js';
import { rngFor } from './random.js';

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

export const appsWhere = (u: SynthUser, category: string): string[] =>
  [...u.homeApps, ...u.dock].filter((id) => APP_BY_ID.get(id)?.category === category).map((id) => `app.${id}`);

export const INTENTS: readonly IntentDef[] = [
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
