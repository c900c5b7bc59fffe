#!/usr/bin/env node
// Constrained vs free greedy decoding on the same samples: evaluation wall time, generated tokens, parse
// failures and accuracy, through the Grounder's batch path (the one predict() and `pigg eval` use). By default
// it runs on the demo's data and models (`pigg demo --out runs/demo` first): the vanilla (random) model, whose
// free answers never stop, and the global fine-tune.
//
//   node bench/constrain.mjs [--demo runs/demo] [--models base,global] [--users 1,2] [--batch 4]
//                            [--budgets 64,512] [--style pigg] [--threads N] [--name NAME] [--out bench/results]
//
// A budget is max_new_tokens (512 is PIGG's); a constrained answer needs one that holds the grammar's longest answer.
//
// Writes <out>/constrain-<name>.json in the bench/results format (pigg-only rows).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writePiggOnlyResults } from './pigg-only-results.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pigg = await import(join(root, 'dist', 'index.js'));
const { DEMO } = await import(join(root, 'dist', 'experiments', 'demo.js'));

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const demo = resolve(arg('demo', join(root, 'runs', 'demo')));
const models = arg('models', 'base,global').split(',');
const users = arg('users', DEMO.personalUsers.join(',')).split(',');
const batchSize = Number(arg('batch', '4'));
const budgets = arg('budgets', '64,512').split(',').map(Number);
const style = arg('style', DEMO.settings.style);
const threads = arg('threads') ? Number(arg('threads')) : undefined;
const name = arg('name', 'demo-cpu');
const outDir = resolve(arg('out', join(root, 'bench', 'results')));
const data = join(demo, 'data');
if (!existsSync(join(data, 'dataset.json'))) throw new Error(`${demo} holds no demo run: run \`pigg demo --out ${demo}\` first`);

const { samples: all } = await pigg.readDataset(data);
const samples = all.filter((s) => users.includes(s.user));
const rows = [];
for (const modelName of models) {
  const dir = join(demo, 'models', modelName);
  for (const [maxNewTokens, constrain] of budgets.flatMap((budget) => [[budget, 'none'], [budget, 'auto']])) {
    const grounder = await pigg.Grounder.load(dir, { device: 'cpu', dtype: 'fp32', threads, style, constrain, image: DEMO.settings.image, maxNewTokens, maxBatch: batchSize });
    try {
      await grounder.groundSamples(samples.slice(0, batchSize), data, { batchSize }); // warm-up (and the grammar's first masks)
      const start = performance.now();
      const results = await grounder.groundSamples(samples, data, { batchSize });
      const seconds = (performance.now() - start) / 1000;
      const tokens = results.reduce((sum, r) => sum + r.tokens, 0);
      const failures = results.filter((r) => !r.parsed).length;
      const hits = results.filter((r, i) => {
        const { target, width, height } = samples[i];
        const gt = { x: pigg.toGrid(target.x, width), y: pigg.toGrid(target.y, height) };
        return pigg.scoreGrid(r.parsed ? r.grid : null, gt).hit;
      }).length;
      const config = `${modelName} model (tiny, demo), ${samples.length} samples of users ${users.join(',')}, batch ${batchSize}, max ${maxNewTokens} new tokens, style ${style}, constrain ${constrain}`;
      console.error(`[constrain] ${config}: ${seconds.toFixed(2)} s, ${tokens} tokens, ${failures} parse failures, ${hits} hits`);
      const row = (metric, unit, value) => ({ bench: 'constrain', config, metric, unit, pigg: value, transformers: null, ratio: null });
      rows.push(
        row('evaluation wall time', 's', seconds),
        row('generated tokens (all samples)', 'tokens', tokens),
        row('parse failures', 'samples', failures),
        row('acc@140', 'fraction', hits / samples.length),
      );
    } finally {
      grounder.dispose();
    }
  }
}
const file = writePiggOnlyResults({ bench: 'constrain', name, outDir, device: 'cpu', torch: pigg.engineVersions().torch, rows });
console.error(`[constrain] wrote ${file}`);
