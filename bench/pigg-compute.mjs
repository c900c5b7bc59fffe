#!/usr/bin/env node
// What one PIGG sample costs at the image size PIGG's runs fed (1080×2400 → 2550 image tokens, grid [1, 150, 68])
// and at the size it asked for (1280·28·28 → 966): tokens, vision patches, FLOPs of an evaluation prefill and of a
// training step's sample, KV cache and checkpointed activations, from the model shapes (no timing; README,
// "PIGG-exact evaluation").
//
//   node bench/pigg-compute.mjs [--text-tokens 118] [--answer-tokens 20]
//
// Counted: the decoder's linear layers (2 FLOPs per weight per token) and causal attention (2·T²·d per layer), the
// vision blocks, patch embedding and patch mergers per patch and their bidirectional attention (4·P²·d per layer),
// the output layer at the supervised positions only. Training: vision tower and mergers frozen (forward only), the
// decoder's forward, backward (2×) and the recomputation of gradient checkpointing (1×). Norms, rotary and softmax
// are left out (under 1%).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { modelConfig } = await import(join(root, 'dist', 'engine', 'configs.js'));
const { smartResize, PIGG_PIXELS, PIGG_EFFECTIVE_PIXELS } = await import(join(root, 'dist', 'processor', 'image.js'));

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
// bench/gpu.mjs measured ~118 text tokens per PIGG sample (chat template, prompt, answer) on the synthetic data.
const textTokens = arg('text-tokens', 118);
const answerTokens = arg('answer-tokens', 20);

function costs(name, pixels) {
  const { text_config: t, vision_config: v } = modelConfig(name);
  const [h, w] = smartResize(2400, 1080, 32, pixels.minPixels, pixels.maxPixels);
  const patches = (h / 16) * (w / 16);
  const imageTokens = patches / 4;
  const T = imageTokens + textTokens;
  const q = t.num_attention_heads * t.head_dim;
  const kv = t.num_key_value_heads * t.head_dim;
  const layer = t.hidden_size * q + 2 * t.hidden_size * kv + q * t.hidden_size + 3 * t.hidden_size * t.intermediate_size;
  const textLinear = 2 * t.num_hidden_layers * layer * T;
  const textAttention = 2 * t.num_hidden_layers * T * T * q;
  const vh = v.hidden_size;
  const block = 4 * vh * vh + 2 * vh * v.intermediate_size;
  const merger = (4 * vh) * (4 * vh) + 4 * vh * t.hidden_size;
  const mergers = 1 + v.deepstack_visual_indexes.length;
  const vision = 2 * (v.depth * block * patches + 1536 * vh * patches + mergers * merger * imageTokens) + 4 * v.depth * patches * patches * vh;
  const head = 2 * t.hidden_size * t.vocab_size;
  const prefill = vision + textLinear + textAttention + head;
  const train = vision + 4 * (textLinear + textAttention) + 3 * head * answerTokens;
  return {
    name, grid: `[1, ${h / 16}, ${w / 16}]`, resized: `${w}×${h}`, patches, imageTokens, T,
    prefill, train, kvBytes: 2 * t.num_hidden_layers * kv * 2 * T, checkpointBytes: t.num_hidden_layers * T * t.hidden_size * 2,
    visionShare: vision / prefill,
  };
}

const tf = (flops) => `${(flops / 1e12).toFixed(2)} TFLOP`;
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
console.log(`| model | image (asked → ran) | image tokens | tokens per sample | eval prefill | of it vision | training, per sample | KV cache (bf16) | checkpointed layer inputs (bf16) |`);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const name of ['2b', '4b', '8b']) {
  const [a, b] = [costs(name, PIGG_PIXELS), costs(name, PIGG_EFFECTIVE_PIXELS)];
  const pair = (f) => `${f(a)} → ${f(b)}`;
  console.log(`| ${name} | ${a.resized} → ${b.resized} | ${a.imageTokens} → ${b.imageTokens} | ${a.T} → ${b.T} | ${pair((c) => tf(c.prefill))} (×${(b.prefill / a.prefill).toFixed(2)}) | ${pair((c) => `${(c.visionShare * 100).toFixed(0)}%`)} | ${pair((c) => tf(c.train))} (×${(b.train / a.train).toFixed(2)}) | ${pair((c) => mib(c.kvBytes))} | ${pair((c) => mib(c.checkpointBytes))} |`);
}
console.log(`\n${textTokens} text tokens per sample, ${answerTokens} of them supervised; grid ${costs('8b', PIGG_EFFECTIVE_PIXELS).grid} as run, ${costs('8b', PIGG_PIXELS).grid} as asked.`);
