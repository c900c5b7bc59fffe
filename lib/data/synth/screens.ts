// The six phone screens as a user sees them (quick settings, home, chat list, share sheet, confirm dialog, settings
// list), drawn on a Canvas in the user's layout and theme with small per-sample variation (clock, jitter, toggles).
import { ACCENTS, APP_BY_ID, CONTACTS, DARK, DIALOGS, LIGHT, PREVIEWS, SETTINGS, SHARE_TARGETS, TILES, type ScreenName, type Theme } from './catalogue.js';
import { Canvas, type SynthScreen } from './canvas.js';
import type { SynthConfig } from './config.js';
import type { Rng } from './random.js';
import type { SynthUser } from './users.js';

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

function drawConfirmDialog(ctx: DrawContext): void {
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

/** Draws one screen of a user; its elements are the tap targets, with their boxes in canvas pixels. */
export function drawScreen(name: ScreenName, config: SynthConfig, u: SynthUser, rng: Rng): SynthScreen {
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

