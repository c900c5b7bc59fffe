// `pigg inspect <model-dir>`: validate a checkpoint folder without loading its data and print a summary.
import type { Command } from 'commander';
import { inspectCheckpoint } from '../engine/model.js';
import { action } from './common.js';

function millions(n: number): string {
  return `${(n / 1e6).toFixed(n < 1e7 ? 3 : 1)}M`;
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('validate a Qwen3-VL checkpoint folder and print a summary')
    .argument('<model-dir>', 'Hugging Face model folder (config.json + safetensors)')
    .option('--json', 'print the summary as JSON')
    .action(action(async (dir: string, options: { json?: boolean }) => {
      const summary = await inspectCheckpoint(dir);
      if (options.json) {
        console.log(JSON.stringify(summary, null, 2));
        return;
      }
      const { text, vision } = summary.config;
      console.log(`${summary.path}: ${summary.architecture.join(', ')} (${summary.modelType})`);
      console.log(`  parameters  ${millions(summary.parameters.total)} total: vision ${millions(summary.parameters.vision)}, text ${millions(summary.parameters.text)}`);
      console.log(`  text        ${text.layers} layers, hidden ${text.hidden}, heads ${text.heads}/${text.kvHeads} kv, head_dim ${text.headDim}, mlp ${text.intermediate}, vocab ${text.vocab}, rope_theta ${text.ropeTheta}, mrope ${JSON.stringify(text.mropeSection)}`);
      console.log(`  vision      depth ${vision.depth}, hidden ${vision.hidden}, heads ${vision.heads}, mlp ${vision.intermediate}, patch ${vision.patchSize}, deepstack ${JSON.stringify(vision.deepstackIndexes)}`);
      console.log(`  lm_head     ${summary.tiedHead ? 'tied to embed_tokens' : 'separate lm_head.weight'}`);
      console.log(`  tensors     ${summary.tensors} (${Object.entries(summary.dtypes).map(([d, n]) => `${n} ${d}`).join(', ')})`);
      console.log(`  shards      ${summary.files.length}: ${summary.files.map((f) => f.split('/').pop()).join(', ')}`);
      for (const warning of summary.warnings) console.log(`  warning     ${warning}`);
    }));
}
