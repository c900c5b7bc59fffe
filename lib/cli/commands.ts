// The list of CLI commands; add a module here to expose it as `pigg <name>`.
import type { Command } from 'commander';
import { register as fixture } from './fixture.js';
import { register as inspect } from './inspect.js';
import { register as folds } from './folds.js';
import { register as convert } from './convert.js';
import { register as preprocess } from './preprocess.js';
import { register as initRandom } from './init-random.js';
import { register as experiments } from './experiments.js';
import { register as demo } from './demo.js';
import { register as synth } from './synth.js';
import { register as visualize } from './visualize.js';
import { register as report } from './report.js';
import { register as serve } from './serve.js';
import { register as doctor } from './doctor.js';

export const commands: Array<(program: Command) => void> = [inspect, fixture, folds, convert, synth, preprocess, initRandom, experiments, demo, visualize, report, serve, doctor];
