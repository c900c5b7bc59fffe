// Samples: each one a pure function of (seed, user, index). Its PRNG is seeded from `${seed}|${user}|${index}`,
// so a sample can be made alone and in any order. A sample is one screen of the user, an instruction of one kind
// (explicit, intent-level or icon-only) and the user's tap on its target.
import { createHash } from 'node:crypto';
import type { Sample } from '../types.js';
import { APP_BY_ID, MY_APP_CATEGORIES, MY_APP_NOUNS, SCREENS, type ScreenName } from './catalogue.js';
import type { SynthElement, SynthScreen } from './canvas.js';
import { userSampleCount, type SynthConfig } from './config.js';
import { rngFor, type Rng } from './random.js';
import { drawScreen } from './screens.js';
import { appsWhere, INTENTS, synthUser, type SynthUser } from './users.js';

export type SynthKind = 'explicit' | 'intent' | 'icon_only';
/** Probability that an ambiguous intent resolves to the user's favourite candidate. */
export const P_PREF = 0.9;

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

/** The favourite with probability P_PREF, otherwise one of the other candidates uniformly. */
function choosePreferred(rng: Rng, candidates: string[], favourite: string): string {
  const others = candidates.filter((id) => id !== favourite);
  return others.length === 0 || rng.float() < P_PREF ? favourite : rng.pick(others);
}

function sampleImagePath(user: string, index: number): string {
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
