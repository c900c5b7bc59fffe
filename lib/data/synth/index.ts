// "synthphone": a deterministic synthetic phone-GUI grounding dataset (datasets.md §6) written in the
// gg-sample/1 layout (§5). Every sample is a pure function of (seed, user, index): its PRNG is seeded from a
// string hash of `${seed}|${user}|${index}`, so samples can be made alone and in any order. The personalization
// signal is built in: per-user layouts, themes, hidden home-screen labels, preferences for ambiguous intents
// and a tap bias, which a per-user prior can learn and a global prior cannot.
//
// The generator in parts: random.ts (PRNG), config.ts (options), catalogue.ts (screens, apps, items, themes),
// users.ts (per-user layouts and preferences), canvas.ts and screens.ts (SVG drawing), samples.ts (one sample from
// (seed, user, index)), write.ts (the dataset on disk).
export { resolveSynthConfig, type SynthConfig, type SynthOptions } from './config.js';
export { synthSamples, type SynthItem, type SynthKind } from './samples.js';
export { writeSynthDataset, type SynthDatasetInfo, type WriteSynthOptions } from './write.js';
