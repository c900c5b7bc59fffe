// `pigg serve`: a Grounder over HTTP (lib/serve). SIGTERM or SIGINT drains: the requests accepted are answered,
// new ones get 503, then the process exits 0.
import type { Command } from 'commander';
import { ANSWER_STYLES, type AnswerStyle } from '../data/parse.js';
import { CONSTRAIN_OPTIONS, DEFAULT_MAX_BATCH, type ConstrainOption } from '../grounding/grounder.js';
import { PIGG_PIXELS } from '../processor/image.js';
import { defaultImageWorkers } from '../processor/image-pool.js';
import { DEFAULT_MAX_IMAGE_PIXELS } from '../grounding/validate.js';
import { serve } from '../serve/serve.js';
import { DEFAULT_HOST, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_INSTRUCTION_LENGTH, DEFAULT_MAX_QUEUE, DEFAULT_PORT } from '../serve/server.js';
import { action, choiceOption, integerOption } from './common.js';
import { InvalidArgumentError } from 'commander';
import { DEFAULT_HOLDOUT, DEFAULT_MIN_NEW_SAMPLES, type TrainFrom } from '../personalize/personalizer.js';

interface ServeFlags {
  model: string;
  adapters?: string;
  host: string;
  port: number;
  maxBatch: number;
  maxQueue: number;
  device: string;
  dtype?: 'fp32' | 'bf16';
  threads?: number;
  maxAdapterBytes?: number;
  constrain: ConstrainOption;
  style: AnswerStyle;
  maxNewTokens?: number;
  minPixels: number;
  maxPixels: number;
  imageWorkers: number;
  maxImageBytes: number;
  maxInstructionLength: number;
  drainTimeout: number;
  feedback?: string;
  trainAfter: number;
  holdout: number;
  trainFrom: TrainFrom;
  feedbackLr?: number;
  feedbackEpochs?: number;
  apiKey: string[];
  adminKey: string[];
  allowedHost: string[];
  adapterRoot: string[];
  maxImagePixels: number;
  allowSvg: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];
/** Keys from the environment: one, or several separated by commas (rotation). */
const envKeys = (name: string) => (process.env[name] ?? '').split(',').map((k) => k.trim()).filter((k) => k !== '');

/** A share in (0, 1). */
function shareOption(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !(n > 0 && n < 1)) throw new InvalidArgumentError(`${flag} expects a share between 0 and 1 (exclusive), got '${value}'`);
    return n;
  };
}

function rateOption(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${flag} expects a number >= 0, got '${value}'`);
    return n;
  };
}

const log = (line: string) => process.stderr.write(`pigg serve: ${line}\n`);

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a model (and per-user LoRA adapters) over HTTP: /v1/ground, OpenAI-compatible /v1/chat/completions, /metrics')
    .requiredOption('--model <dir>', 'model folder')
    .option('--adapters <dir>', 'a folder of adapters: each subfolder holding adapter_config.json is served under its folder name')
    .option('--host <host>', 'address to listen on', DEFAULT_HOST)
    .option('--port <n>', 'port (0: any free port)', integerOption('--port'), DEFAULT_PORT)
    .option('--max-batch <n>', 'concurrent requests batched into one generate call', integerOption('--max-batch', 1), DEFAULT_MAX_BATCH)
    .option('--max-queue <n>', 'requests queued or running at which new ones get 429', integerOption('--max-queue', 1), DEFAULT_MAX_QUEUE)
    .option('--device <device>', 'cpu, cuda or cuda:N', 'cpu')
    .option('--dtype <dtype>', 'compute dtype (default: bf16 on cuda, fp32 on cpu)', choiceOption('--dtype', ['fp32', 'bf16'] as const))
    .option('--threads <n>', 'CPU threads for the engine', integerOption('--threads', 1))
    .option('--max-adapter-bytes <n>', 'device bytes of adapters kept on the device, least recently used dropped first (default: no limit)', integerOption('--max-adapter-bytes'))
    .option('--constrain <grammar>', 'constrained decoding: auto (the grammar of --style), pigg, qwen-json, point or none (free, as PIGG)', choiceOption('--constrain', CONSTRAIN_OPTIONS), 'auto')
    .option('--style <style>', 'prompt and answer style', choiceOption('--style', ANSWER_STYLES), 'pigg')
    .option('--max-new-tokens <n>', 'generation budget per request (and the most a request may ask for; default: the engine\'s)', integerOption('--max-new-tokens', 1))
    .option('--min-pixels <n>', 'image min_pixels', integerOption('--min-pixels', 1), PIGG_PIXELS.minPixels)
    .option('--max-pixels <n>', "image max_pixels (PIGG's 1280*28*28 by default)", integerOption('--max-pixels', 1), PIGG_PIXELS.maxPixels)
    .option('--image-workers <n>', 'worker threads decoding and resizing images (0: the main thread, where a large image stalls every request)', integerOption('--image-workers'), Math.max(1, defaultImageWorkers()))
    .option('--max-image-bytes <n>', 'bytes of a decoded image; more is 413', integerOption('--max-image-bytes', 1), DEFAULT_MAX_IMAGE_BYTES)
    .option('--max-image-pixels <n>', 'pixels an image may declare (width x height), checked before decoding', integerOption('--max-image-pixels', 1), DEFAULT_MAX_IMAGE_PIXELS)
    .option('--allow-svg', 'accept SVG images (off: an SVG declares any size and is rendered by a program)', false)
    .option('--api-key <key>', 'clients must send Authorization: Bearer KEY (repeat for several; default PIGG_API_KEY, comma-separated)', collect, [])
    .option('--admin-key <key>', 'key of adapter load/unload and the user routes (repeat for several; default PIGG_ADMIN_KEY)', collect, [])
    .option('--allowed-host <name>', 'a Host header name to answer besides localhost/127.0.0.1/::1 (repeat; DNS-rebinding guard)', collect, [])
    .option('--adapter-root <dir>', 'a folder POST /v1/adapters may load adapters from, besides --adapters (repeat)', collect, [])
    .option('--max-instruction-length <n>', 'characters of an instruction; more is 400', integerOption('--max-instruction-length', 1), DEFAULT_MAX_INSTRUCTION_LENGTH)
    .option('--drain-timeout <ms>', 'on SIGTERM, abort the requests still running after this many ms', integerOption('--drain-timeout'), 120_000)
    .option('--feedback <dir>', "learn from feedback: POST /v1/feedback stores users' taps in DIR, each user's LoRA trains beside inference and is promoted when better on the user's held-out taps; GET /v1/users/:id")
    .option('--train-after <n>', 'with --feedback: train a user after this many new taps', integerOption('--train-after', 1), DEFAULT_MIN_NEW_SAMPLES)
    .option('--holdout <share>', "with --feedback: share of a user's most recent taps held out to decide a promotion", shareOption('--holdout'), DEFAULT_HOLDOUT)
    .option('--train-from <from>', "with --feedback: a fresh LoRA on the served model each time (base) or continue the user's current adapter (current)", choiceOption('--train-from', ['base', 'current'] as const), 'base')
    .option('--feedback-lr <lr>', "with --feedback: learning rate (default PIGG's personal 2e-5)", rateOption('--feedback-lr'))
    .option('--feedback-epochs <n>', "with --feedback: epochs (default PIGG's personal 3)", integerOption('--feedback-epochs', 1))
    .action(action(async (flags: ServeFlags) => {
      const dtype = flags.dtype ?? (flags.device.startsWith('cuda') ? 'bf16' : 'fp32');
      log(`loading ${flags.model} on ${flags.device} (${dtype})`);
      // A signal while loading stops the load; once serving, it drains.
      const loading = new AbortController();
      let stop = (signal: string) => {
        log(`${signal} while loading: stopping`);
        loading.abort();
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      const exit = (code: number, line: string) => {
        log(line);
        process.exit(code);
      };
      let serving: Awaited<ReturnType<typeof serve>>;
      try {
        serving = await serve({
          model: flags.model,
          adapters: flags.adapters,
          host: flags.host,
          port: flags.port,
          maxQueue: flags.maxQueue,
          maxImageBytes: flags.maxImageBytes,
          maxInstructionLength: flags.maxInstructionLength,
          drainTimeout: flags.drainTimeout,
          access: {
            apiKeys: flags.apiKey.length > 0 ? flags.apiKey : envKeys('PIGG_API_KEY'),
            adminKeys: flags.adminKey.length > 0 ? flags.adminKey : envKeys('PIGG_ADMIN_KEY'),
            allowedHosts: flags.allowedHost.length > 0 ? flags.allowedHost : undefined,
          },
          adapterRoots: flags.adapterRoot,
          onWarning: (message) => log(`WARNING: ${message}`),
          grounder: {
            device: flags.device, dtype, threads: flags.threads, style: flags.style, constrain: flags.constrain, maxBatch: flags.maxBatch,
            maxNewTokens: flags.maxNewTokens, maxAdapterBytes: flags.maxAdapterBytes, imageWorkers: flags.imageWorkers,
            image: { minPixels: flags.minPixels, maxPixels: flags.maxPixels }, signal: loading.signal,
            input: { maxImagePixels: flags.maxImagePixels, allowSvg: flags.allowSvg, maxInstructionLength: flags.maxInstructionLength },
          },
          onAdapter: (name, path) => log(`adapter ${name} from ${path}`),
          feedback: flags.feedback === undefined ? undefined : {
            dir: flags.feedback, minNewSamples: flags.trainAfter, holdout: flags.holdout, from: flags.trainFrom,
            overrides: { ...(flags.feedbackLr === undefined ? {} : { learningRate: flags.feedbackLr }), ...(flags.feedbackEpochs === undefined ? {} : { epochs: flags.feedbackEpochs }) },
            onEvent: (event) => {
              if (event.type === 'decision') {
                const d = event.decision;
                const m = (x: typeof d.candidate) => (x ? `acc ${x.accuracy === null ? '-' : (x.accuracy * 100).toFixed(1)}% L2 ${x.mean_l2?.toFixed(1) ?? '-'}` : '-');
                log(`user ${d.user}: ${d.decision}${d.version === null ? '' : ` v${d.version}`}${d.candidate ? ` (candidate ${m(d.candidate)} vs ${d.previous === null ? 'base' : `v${d.previous}`} ${m(d.baseline)})` : ''}${d.error ? `: ${d.error}` : ''}`);
              } else if (event.type === 'started') {
                log(`user ${event.user}: training ${event.steps} steps on ${event.samples} samples${event.resumed ? ' (resumed after a restart)' : ''}`);
              } else if (event.type === 'warning') {
                log(event.message);
              }
            },
          },
        });
      } catch (error) {
        if (loading.signal.aborted) exit(0, 'stopped');
        throw error;
      }
      stop = (signal: string) => {
        log(`${signal}: draining ${serving.inFlight} request(s); new requests get 503`);
        serving.stop().then(() => exit(0, 'stopped'), (error: Error) => exit(1, `stopping failed: ${error.message}`));
      };
      // A signal that came after the weights had loaded (while adding adapters, say): stop now.
      if (loading.signal.aborted) {
        stop('signal');
        return;
      }
      log(`listening on ${serving.url} (model ${serving.grounder.modelName}, ${serving.grounder.adapters().length} adapter(s), max batch ${flags.maxBatch}, max queue ${flags.maxQueue}${flags.feedback ? `, feedback in ${flags.feedback}` : ''})`);
    }));
}
