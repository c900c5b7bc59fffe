// What the synthetic screens are made of: the six screens, glyphs (single even-odd paths on a 24x24 box), apps,
// quick-settings tiles, share targets, contacts, settings entries, dialogs, message previews, accents and themes.
// Data tables only; users.ts draws each user's picks from them, screens.ts draws them.

export type ScreenName = 'quick_settings' | 'home' | 'chat_list' | 'share_sheet' | 'confirm_dialog' | 'settings_list';
export const SCREENS: readonly ScreenName[] = ['quick_settings', 'home', 'chat_list', 'share_sheet', 'confirm_dialog', 'settings_list'];

export const GLYPHS: Record<string, string> = {
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
export const GRID_APPS: readonly AppDef[] = [
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
export const DOCK_APPS: readonly AppDef[] = [
  app('phone', 'Phone', 'phone', 'phone', '#0F9D58'),
  app('messages', 'Messages', 'messaging', 'bubble', '#1A73E8'),
  app('browser', 'Browser', 'browser', 'globe', '#E8710A'),
  app('camera', 'Camera', 'camera', 'camera', '#546E7A'),
];

export const CATEGORIES = [...new Set(GRID_APPS.map((a) => a.category))];
// "Open my <noun> app" per category; the noun never equals an app label, so a label oracle cannot shortcut it.
export const MY_APP_NOUNS: Readonly<Record<string, string>> = {
  music: 'music',
  photos: 'photo',
  video: 'video',
  news: 'news',
  fitness: 'fitness',
  games: 'game',
  banking: 'banking',
};
export const MY_APP_CATEGORIES = Object.keys(MY_APP_NOUNS);
export const APP_BY_ID = new Map([...GRID_APPS, ...DOCK_APPS].map((a) => [a.id, a]));

interface ItemDef {
  id: string;
  label: string;
  glyph: string;
  color: string;
}

const item = (id: string, label: string, glyph: string, color: string): ItemDef => ({ id, label, glyph, color });

export const TILES: readonly ItemDef[] = [
  item('wifi', 'Wi-Fi', 'wifi', '#1A73E8'),
  item('bluetooth', 'Bluetooth', 'bluetooth', '#1A73E8'),
  item('mobile_data', 'Mobile data', 'signal', '#1A73E8'),
  item('airplane', 'Airplane mode', 'plane', '#1A73E8'),
  item('flashlight', 'Flashlight', 'torch', '#1A73E8'),
  item('location', 'Location', 'pin', '#1A73E8'),
  item('dnd', 'Do not disturb', 'dnd', '#1A73E8'),
  item('hotspot', 'Hotspot', 'hotspot', '#1A73E8'),
];

export const SHARE_TARGETS: readonly ItemDef[] = [
  item('mail', 'Mail', 'envelope', '#EA4335'),
  item('messages', 'Messages', 'bubble', '#1A73E8'),
  item('chatter', 'Chatter', 'bubble', '#25A244'),
  item('pigeon', 'Pigeon', 'bird', '#229ED9'),
  item('drive', 'Drive', 'drive', '#F4B400'),
  item('notes', 'Notes', 'pencil', '#F9AB00'),
  item('copy', 'Copy link', 'copy', '#5F6368'),
  item('nearby', 'Nearby', 'nearby', '#12B5CB'),
];

export const CONTACTS: readonly ItemDef[] = [
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
export const FAMILY = new Set(['mom', 'dad']);

export const SETTINGS: readonly (ItemDef & { subtitle: string })[] = [
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

export const DIALOGS = [
  { title: 'Delete 3 photos?', body: ['These photos will be removed', 'from all your devices.'], confirm: 'Delete' },
  { title: 'Discard draft?', body: ['Your message has not been', 'sent yet.'], confirm: 'Discard' },
  { title: 'Turn off backup?', body: ['New photos will not be', 'backed up.'], confirm: 'Turn off' },
  { title: 'Log out?', body: ['You will need your password', 'to sign in again.'], confirm: 'Log out' },
] as const;

export const PREVIEWS = [
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

export const ACCENTS = ['#1A73E8', '#D93025', '#188038', '#E8710A', '#A142F4', '#12B5CB', '#E52592', '#5F35B5'];
export const FONT_SCALES = [0.9, 1, 1.1, 1.25];

export interface Theme {
  bg: string;
  surface: string;
  surface2: string;
  text: string;
  sub: string;
}

export const LIGHT: Theme = { bg: '#F4F5F7', surface: '#FFFFFF', surface2: '#E3E5E9', text: '#1B1C1F', sub: '#5F6368' };
export const DARK: Theme = { bg: '#101114', surface: '#1F2126', surface2: '#30333A', text: '#F1F2F4', sub: '#A7ABB3' };
