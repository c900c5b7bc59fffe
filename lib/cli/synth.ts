// `pigg synth --out DIR --users N --samples-per-user M --seed S [--small]`: the deterministic synthetic
// phone-GUI dataset (users with their own layouts, themes and preferences).
import type { Command } from 'commander';
import { writeSynthDataset } from '../data/synth/index.js';
import { action, integerOption } from './common.js';

export function register(program: Command): void {
  program
    .command('synth')
    .description('write a deterministic synthetic phone-GUI dataset (gg-sample/1) with per-user layouts and preferences')
    .requiredOption('--out <dir>', 'output dataset folder')
    .option('--users <n>', 'number of users', integerOption('--users', 1), 14)
    .option('--personal <n>', 'how many of the first users are "personal" (the rest are "global")', integerOption('--personal'))
    .option('--samples-per-user <n>', 'samples per user (default: drawn per user in 30..90)', integerOption('--samples-per-user', 1))
    .option('--seed <seed>', 'seed (any string)', 'pigg')
    .option('--small', 'a 540x1200 canvas instead of 1080x2400')
    .option('--no-images', 'write the manifest only (no PNG rasterisation)')
    .option('--force', 'replace a non-empty output folder')
    .action(action(async (flags: { out: string; users: number; personal?: number; samplesPerUser?: number; seed: string; small?: boolean; images: boolean; force?: boolean }) => {
      const info = await writeSynthDataset(flags.out, {
        users: flags.users, personal: flags.personal, samplesPerUser: flags.samplesPerUser, seed: flags.seed, small: flags.small,
        images: flags.images, force: flags.force,
      });
      const counts = Object.entries(info.counts).map(([kind, n]) => `${n} ${kind}`).join(', ');
      console.log(`wrote ${flags.out}: ${info.users.length} users (${info.synth.personal.length} personal), ${counts}`);
    }));
}
