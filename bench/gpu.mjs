#!/usr/bin/env node
// GPU benchmark harness (issue 6, "Speed and memory on the GPU"): pigg against transformers on PIGG-shaped work,
// in one command. It also runs end to end on the CPU at small sizes (`--config tiny --device cpu`), which is what
// the test suite does; every number it writes is measured, never estimated.
//
// On a GPU machine (the addon built against the CUDA torch: `PIGG_TORCH_CUDA=1 npm run torch && npm run build`),
// a command must finish within 10 minutes, so run the sizes separately, smallest first:
//
//   node bench/gpu.mjs --config 2b --device cuda --name h100-2b
//   node bench/gpu.mjs --config 8b --device cuda --name h100-8b
//   PIGG_HF_PYTHON=/path/to/python-with-transformers-peft-and-cuda-torch node bench/gpu.mjs --config 8b --device cuda --name h100-8b
//   node bench/table.mjs        # renders bench/results/*.json into README.md
//
// (On an H200 use --name h200-8b; --peak-tflops defaults to 989, the bf16 dense peak of both H100 SXM and H200.)
// If a command would not fit in 10 minutes, split it with --only train|click|eval|load (comma-separated) and
// --variants; each run writes its own results file (use a different --name). The transformers column needs a python
// with CUDA torch, transformers and peft already on the machine (without PIGG_HF_PYTHON those columns are null).
// Expected at 8b on an 80 GB H100: the fp32-moment update modes run out of memory (master: bf16 weights and
// gradients + fp32 master + fp32 moments = 16 B per trainable parameter ≈ 130 GB; kahan 14 B, stochastic 12 B);
// such a variant is recorded with null values and "[pigg: out of memory]" in its config, and the run goes on.
// The parent process never touches the GPU (the random weights are written by a child too).
//
// Flags:
//   --config tiny|2b|4b|8b   model shape (initRandomModel: random weights, real shapes, real tokenizer). Default tiny.
//   --device cuda|cpu        default: cuda when the addon is a CUDA build, else cpu.
//   --dtype bf16|fp32        compute dtype and checkpoint file dtype; default bf16 on cuda, fp32 on cpu.
//   --steps N                timed optimizer steps per training variant (median reported). Default 5.
//   --warmup N               untimed steps / generate calls before timing. Default 1.
//   --accum N                micro-batches (of 1 sample) per optimizer step. Default 4 (PIGG's personalized runs).
//   --runs N                 timed generate calls (median reported). Default 5.
//   --new-tokens N           tokens decoded per generate call (EOS disabled, so exactly N). Default 20.
//   --eval-batch N           batch of the evaluation-throughput measurement. Default 8.
//   --variants LIST          training variants, from master,kahan,stochastic,pure,lora (bf16) or full,lora (fp32,
//                            where update modes do not apply). Default: all of them.
//   --only LIST              benches to run, from train,click,eval,load. Default: all.
//   --head-loss fused|plain  the training loss through lm_head: fused and chunked (the default) or the plain logits +
//                            cross-entropy (for comparison; pigg only, the config says which).
//   --peak-tflops X          peak dense FLOP/s (in TFLOP/s) of the device in the compute dtype, for MFU.
//                            Default 989 on cuda with bf16; none on cpu (MFU is then null).
//   --work DIR               cache of the model folders and the synthetic dataset, reused by later runs.
//                            Default $TMPDIR/pigg-gpu-bench.
//   --name NAME, --out DIR   the results file is <out>/<name>.json. Default: <device>-<config>, bench/results.
//
// What is measured (each bench in its own child process, pigg and transformers alike, so that peak memory
// belongs to that bench alone):
//   train  One optimizer step on PIGG-like samples: synthetic 1080×2400 phone screenshots (writeSynthDataset),
//          processed as PIGG's runs processed them (pigg eval's PIGG_EXACT: 1088×2400 → 2550 image tokens, not the
//          966 of the 1280·28·28 PIGG asked for) and PIGG's prompt and answer through the
//          real processor (buildBatch, mode 'pigg'); batch 1 × accumulation 4; gradient checkpointing on; vision
//          tower and mergers frozen; AdamW (lr 1e-5 constant, decay 0.01, clip 1.0). Variants: full fine-tune
//          with update mode master / kahan / stochastic / pure, and LoRA (r 8, α 32, dropout 0.1, all linear
//          layers of the language model). Metrics: median time per optimizer step, samples/s, input tokens/s,
//          MFU, peak memory and the memory the training adds above the loaded model.
//          MFU = model FLOPs per step / (step time × peak FLOP/s). Model FLOPs per input token: 6·N for a full
//          fine-tune, N the text model's matmul parameters (all text weights but the embedding lookup; a tied
//          head counts once, as the lm_head); for LoRA 4·N + 6·N_lora (forward and input gradients through the
//          frozen base, weight gradients only for the adapters). The vision tower (frozen), attention scores and
//          the checkpointing recompute are not counted.
//   click  Click latency: one sample (batch 1), prefill + N new tokens (greedy, EOS disabled: pigg eosTokenIds
//          [], transformers min_new_tokens = max_new_tokens), median; the prefill alone (1 new token); and the
//          decode time per new token derived from the two; and pigg's decode tokens/s from generate()'s own
//          device-synchronized decode timing (the decode steps alone: one static-shape pass per step, see
//          native/text.h), which transformers' side does not report.
//   eval   Batched evaluation throughput: --eval-batch samples, left-padded, N new tokens each; samples/s, pigg's
//          decode tokens/s over all rows (as for click), and the peak memory of the generation child.
//   load   Weight loading from a warm page cache: the saved checkpoint loaded twice in one process, the second
//          timed (pigg Qwen3VL.load; transformers from_pretrained(dtype, device_map=device)).
// Peak memory: on CUDA the caching allocator's peak allocated bytes (pigg: Qwen3VL.info().deviceMemory;
// transformers: torch.cuda.max_memory_allocated), model weights included; on the CPU the peak RSS of the child
// (VmHWM; glibc's mmap threshold pinned so RSS follows live memory). "Training memory above the loaded model" is
// the peak minus the same figure taken after the load and a tiny forward (current allocated bytes on CUDA, the
// peak RSS so far on the CPU), before the optimizer state exists.
//
// transformers: with PIGG_HF_PYTHON (a python with transformers, and peft for LoRA) the same inputs (the exact
// tensors, through safetensors files) and the same model folder run in scripts/hf-crosscheck.py (bench,
// bench_generate, bench_load). Update modes master / kahan / stochastic have no transformers twin (torch AdamW on
// bf16 weights is "pure"), so their transformers columns are null. ratio > 1 means pigg is better:
// transformers / pigg for times and memory, pigg / transformers for throughputs and MFU.
// A side that fails (e.g. CUDA out of memory at 8b for the fp32-state update modes) leaves its values null and
// says why in the row's config.
//
// Writes <out>/<name>.json: {command, device, date, versions: {torch, transformers, pigg}, rows: [{bench, config,
// metric, unit, pigg, transformers, ratio}]}; `node bench/table.mjs` renders it into README.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (path) => import(join(root, 'dist', path));

const VARIANTS_BF16 = ['master', 'kahan', 'stochastic', 'pure', 'lora'];
const VARIANTS_FP32 = ['full', 'lora'];
const BENCHES = ['train', 'click', 'eval', 'load'];
const LORA = { rank: 8, alpha: 32, dropout: 0.1, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
const TRAIN = { learningRate: 1e-5, schedule: 'constant', warmupSteps: 0, weightDecay: 0.01, maxGradNorm: 1.0, gradientCheckpointing: true };
const MALLOC = { MALLOC_MMAP_THRESHOLD_: '131072' };

function usage(message) {
  console.error(`bench/gpu.mjs: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const known = ['config', 'device', 'dtype', 'steps', 'warmup', 'accum', 'runs', 'new-tokens', 'eval-batch', 'variants', 'only', 'peak-tflops', 'work', 'name', 'out', 'head-loss'];
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (!flag.startsWith('--') || !known.includes(flag.slice(2))) usage(`unknown argument ${flag}`);
    if (i + 1 >= argv.length) usage(`${flag} needs a value`);
    args[flag.slice(2)] = argv[++i];
  }
  return args;
}

function positiveInt(args, name, fallback, min = 1) {
  const value = Number(args[name] ?? fallback);
  if (!Number.isInteger(value) || value < min) usage(`--${name} must be an integer >= ${min}`);
  return value;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const round = (value, digits = 4) => (value === null || value === undefined || !Number.isFinite(value) ? null : Number(value.toPrecision(digits)));

// ------------------------------------------------------------------------------------------------------------
// Children (pigg side). Each prints one JSON line on stdout.

// The process's peak RSS in bytes. VmHWM is this process image's own high-water mark; getrusage's ru_maxrss
// (the fallback) survives execve on Linux, so a child would inherit its parent's resident size at spawn.
function peakRss() {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

// CUDA: the caching allocator's current and peak allocated bytes. CPU: the peak RSS so far, for both.
async function peakOf(model, device) {
  if (device.startsWith('cuda')) {
    const memory = (await model.info()).deviceMemory;
    return { allocated: memory.allocated, peak: memory.peakAllocated };
  }
  const rss = peakRss();
  return { allocated: rss, peak: rss };
}

async function childTrain(spec) {
  const { Qwen3VL, readSafetensors } = await dist('index.js');
  const model = await Qwen3VL.load(spec.model, { device: spec.device, dtype: spec.dtype });
  const batches = spec.batches.map((path) => Object.fromEntries(readSafetensors(path)));
  // A tiny text-only forward (the last 8 tokens: the answer's end) pages in the (memory-mapped) text weights before
  // the baseline, as transformers' side does.
  const first = batches[0];
  const tail = (t) => ({ dtype: t.dtype, shape: [1, 8], data: t.data.slice(t.data.length - 8) });
  await model.forward({ input_ids: tail(first.input_ids), attention_mask: tail(first.attention_mask) }, { outputs: ['logits'] });
  const baseline = (await peakOf(model, spec.device)).allocated;
  const options = { ...TRAIN, fusedHeadLoss: spec.headLoss !== 'plain' };
  if (spec.variant === 'lora') options.lora = { rank: LORA.rank, alpha: LORA.alpha, dropout: LORA.dropout, targets: LORA.targets };
  else if (spec.variant !== 'full') options.updateMode = spec.variant;
  const trainer = await model.createTrainer(options);
  const trainable = (await trainer.info()).trainableParameters;
  let report;
  for (let k = 0; k < spec.warmup; k++) report = await trainer.step(batches);
  const times = [];
  const optimizer = [];
  for (let k = 0; k < spec.steps; k++) {
    const start = performance.now();
    report = await trainer.step(batches);
    times.push((performance.now() - start) / 1000);
    optimizer.push(report.optimizerSeconds);
  }
  const memory = await peakOf(model, spec.device);
  console.log(JSON.stringify({ times, median: median(times), optimizerMedian: median(optimizer), trainable, inputTokens: report.inputTokens, tokens: report.tokens,
    loss: report.loss, baselineBytes: baseline, peakBytes: memory.peak }));
  model.dispose();
}

async function childGenerate(spec) {
  const { Qwen3VL, readSafetensors } = await dist('index.js');
  const model = await Qwen3VL.load(spec.model, { device: spec.device, dtype: spec.dtype });
  // Returns generate's own decode time (device-synchronized, the decode steps alone).
  const generate = async (inputs, count) => {
    const { tokens, timing } = await model.generate(inputs, { maxNewTokens: count, eosTokenIds: [] });
    if (tokens.some((row) => row.length !== count)) throw new Error(`generate made ${tokens[0].length} new tokens, not ${count}`);
    return timing.decode;
  };
  const timed = async (inputs, count) => {
    for (let k = 0; k < spec.warmup; k++) await generate(inputs, count);
    const times = [];
    const decode = [];
    for (let k = 0; k < spec.runs; k++) {
      const start = performance.now();
      decode.push(await generate(inputs, count));
      times.push((performance.now() - start) / 1000);
    }
    return { seconds: median(times), decodeStep: median(decode) / (count - 1) };
  };
  const result = {};
  if (spec.prompts.click) {
    const click = Object.fromEntries(readSafetensors(spec.prompts.click));
    ({ seconds: result.click, decodeStep: result.clickDecodeStep } = await timed(click, spec.newTokens));
    result.prefill = (await timed(click, 1)).seconds;
  }
  if (spec.prompts.eval) ({ seconds: result.eval, decodeStep: result.evalDecodeStep } = await timed(Object.fromEntries(readSafetensors(spec.prompts.eval)), spec.newTokens));
  result.peakBytes = (await peakOf(model, spec.device)).peak;
  console.log(JSON.stringify(result));
  model.dispose();
}

async function childInit(spec) {
  const { initRandomModel } = await dist('index.js');
  await initRandomModel(spec.config, spec.dir, { dtype: spec.dtype, device: spec.device, seed: 1 });
  console.log(JSON.stringify({ done: true }));
}

async function childLoad(spec) {
  const { Qwen3VL } = await dist('index.js');
  const times = [];
  for (let k = 0; k < spec.repeats; k++) {
    const start = performance.now();
    const model = await Qwen3VL.load(spec.model, { device: spec.device, dtype: spec.dtype });
    times.push((performance.now() - start) / 1000);
    model.dispose();
  }
  console.log(JSON.stringify({ times }));
}

// ------------------------------------------------------------------------------------------------------------
// Parent

function run(command, argv, what) {
  const child = spawnSync(command, argv, { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...MALLOC } });
  if (child.status !== 0) {
    const lines = `${child.stderr ?? ''}${child.error ? child.error.message : ''}`.trim().split('\n').filter((l) => l.trim() && !/^Node\.js v/.test(l));
    const oom = /out of memory|OutOfMemory|std::bad_alloc/i.test(child.stderr ?? '');
    const errorLine = lines.findLast((l) => /Error\b|error:/.test(l)) ?? lines.at(-1);
    const reason = oom ? 'out of memory' : (errorLine ?? `exit ${child.status ?? child.signal}`).trim().slice(0, 160);
    console.error(`  ${what} failed: ${reason}`);
    if (!oom) console.error(lines.slice(-15).join('\n'));
    return { error: reason };
  }
  return JSON.parse(child.stdout.trim().split('\n').pop());
}

function piggChild(kind, spec) {
  return run(process.execPath, [fileURLToPath(import.meta.url), '--child', kind, JSON.stringify(spec)], `pigg ${kind}`);
}

function makeHf(python, workDir) {
  let versions = null;
  let counter = 0;
  const call = (task) => {
    if (!python) return null;
    const job = join(workDir, `hf-job-${counter++}.json`);
    writeFileSync(job, JSON.stringify({ tasks: [task] }));
    const out = run(python, [join(root, 'scripts', 'hf-crosscheck.py'), job], `transformers ${task.kind}`);
    if (out.error) return out;
    versions = out.versions;
    return out.results[0];
  };
  return { call, versions: () => versions };
}

function deviceString(device) {
  const cpu = `${cpus()[0]?.model?.trim() ?? 'cpu'} × ${cpus().length} threads, ${Math.round(totalmem() / 2 ** 30)} GiB`;
  if (!device.startsWith('cuda')) return `CPU only, no GPU (${cpu})`;
  try {
    const gpu = execFileSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8' })
      .trim().split('\n')[0].split(',').map((s) => s.trim());
    return `${gpu[0]} (${gpu[1]}, driver ${gpu[2]}); host ${cpu}`;
  } catch {
    return `CUDA device (nvidia-smi unavailable); host ${cpu}`;
  }
}

function dirBytes(dir) {
  return readdirSync(dir).reduce((n, f) => n + (f.endsWith('.safetensors') ? statSync(join(dir, f)).size : 0), 0);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { modelConfig, CONFIG_NAMES, engineVersions, writeSynthDataset, readDataset, QwenTokenizer, buildBatch, toHostTensors, writeSafetensors } = await dist('index.js');
  const { sampleSpec, DEFAULT_PROMPT } = await dist('processor/inputs.js');
  const engine = engineVersions();

  const config = args.config ?? 'tiny';
  if (!CONFIG_NAMES.includes(config)) usage(`--config must be one of ${CONFIG_NAMES.join(', ')}`);
  const device = args.device ?? (engine.cuda ? 'cuda' : 'cpu');
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) usage('--device must be cpu or cuda');
  if (device.startsWith('cuda') && !engine.cuda) usage('the addon is not a CUDA build (PIGG_TORCH_CUDA=1 npm run torch && npm run build)');
  const cuda = device.startsWith('cuda');
  const dtype = args.dtype ?? (cuda ? 'bf16' : 'fp32');
  if (!['bf16', 'fp32'].includes(dtype)) usage('--dtype must be bf16 or fp32');
  const steps = positiveInt(args, 'steps', 5);
  const warmup = positiveInt(args, 'warmup', 1, 0);
  const accum = positiveInt(args, 'accum', 4);
  const runs = positiveInt(args, 'runs', 5);
  const newTokens = positiveInt(args, 'new-tokens', 20, 2);
  const evalBatch = positiveInt(args, 'eval-batch', 8);
  const allVariants = dtype === 'bf16' ? VARIANTS_BF16 : VARIANTS_FP32;
  const variants = args.variants ? args.variants.split(',') : allVariants;
  for (const v of variants) if (!allVariants.includes(v)) usage(`--variants: '${v}' is not one of ${allVariants.join(', ')} (${dtype})`);
  const headLoss = args['head-loss'] ?? 'fused';
  if (!['fused', 'plain'].includes(headLoss)) usage('--head-loss must be fused or plain');
  const only = args.only ? args.only.split(',') : BENCHES;
  for (const b of only) if (!BENCHES.includes(b)) usage(`--only: '${b}' is not one of ${BENCHES.join(', ')}`);
  let peakTflops = args['peak-tflops'] !== undefined ? Number(args['peak-tflops']) : cuda && dtype === 'bf16' ? 989 : null;
  if (peakTflops !== null && !(peakTflops > 0)) usage('--peak-tflops must be a positive number');
  if (!cuda) peakTflops = null; // a CPU run has no meaningful peak: MFU stays null
  const name = args.name ?? `${cuda ? 'cuda' : 'cpu'}-${config}`;
  const outDir = resolve(args.out ?? join(root, 'bench', 'results'));
  const work = resolve(args.work ?? join(tmpdir(), 'pigg-gpu-bench'));
  mkdirSync(work, { recursive: true });
  const started = performance.now();
  const log = (message) => console.error(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${message}`);

  // The model folder (cached: initRandomModel once per config and dtype; the marker is written last).
  const modelDir = join(work, `model-${config}-${dtype}`);
  if (!existsSync(join(modelDir, 'bench-ready.json'))) {
    log(`writing random ${config} weights (${dtype}) to ${modelDir}`);
    rmSync(modelDir, { recursive: true, force: true });
    // In a child, so that no CUDA context or cached allocation of this parent takes device memory from the benches.
    const init = piggChild('init', { config, dir: modelDir, dtype, device: cuda ? device : 'cpu' });
    if (init.error) throw new Error(`initRandomModel failed: ${init.error}`);
    writeFileSync(join(modelDir, 'bench-ready.json'), `${JSON.stringify({ config, dtype, seed: 1 })}\n`);
  }
  // The synthetic dataset: one user, full-size 1080×2400 screenshots.
  const samplesNeeded = Math.max(accum, evalBatch);
  const dataDir = join(work, `synth-1080x2400-${samplesNeeded}`);
  if (!existsSync(join(dataDir, 'manifest.jsonl'))) {
    log(`writing ${samplesNeeded} synthetic 1080×2400 screenshots to ${dataDir}`);
    await writeSynthDataset(dataDir, { users: 1, personal: 1, samplesPerUser: samplesNeeded, seed: 'pigg-gpu-bench', small: false, force: true });
  }

  // The inputs, built once through the real processor and handed to both sides as safetensors files.
  const runDir = mkdtempSync(join(work, 'run-'));
  try {
    const tokenizer = QwenTokenizer.fromDir(modelDir);
    const samples = (await readDataset(dataDir)).samples.slice(0, samplesNeeded);
    const specs = await Promise.all(samples.map((s) => sampleSpec(s, dataDir, DEFAULT_PROMPT, true)));
    const image = specs[0].images[0];
    const trainFiles = [];
    const trainTokens = [];
    for (let k = 0; k < accum; k++) {
      const tensors = toHostTensors(buildBatch(tokenizer, [specs[k]], { mode: 'pigg' }));
      trainFiles.push(join(runDir, `train-${k}.safetensors`));
      writeSafetensors(trainFiles[k], tensors);
      trainTokens.push(tensors.input_ids.shape[1]);
    }
    const clickTensors = toHostTensors(buildBatch(tokenizer, [specs[0]], { mode: 'generate' }));
    const evalTensors = toHostTensors(buildBatch(tokenizer, specs.slice(0, evalBatch), { mode: 'generate' }));
    const prompts = { click: join(runDir, 'click.safetensors'), eval: join(runDir, 'eval.safetensors') };
    writeSafetensors(prompts.click, clickTensors);
    writeSafetensors(prompts.eval, evalTensors);
    const imageTokens = image.numImageTokens;
    const textTokens = trainTokens.map((n) => n - imageTokens);
    const answerTokens = (() => {
      const labels = toHostTensors(buildBatch(tokenizer, [specs[0]], { mode: 'pigg' })).labels.data;
      return labels.reduce((n, v) => n + (v !== -100n ? 1 : 0), 0);
    })();

    const shape = modelConfig(config);
    const text = shape.text_config;
    const vision = shape.vision_config;
    const modelLabel = `${config} (text ${text.num_hidden_layers}×${text.hidden_size}, vision ${vision.depth}×${vision.hidden_size})`;
    const textParams = (() => {
      // The text model's matmul parameters: every text weight but the embedding lookup; a tied head counts once
      // (as the lm_head), an untied one is its own matrix.
      const h = text.hidden_size, f = text.intermediate_size, d = text.head_dim;
      const layer = h * text.num_attention_heads * d * 2 + h * text.num_key_value_heads * d * 2 + 3 * h * f + 2 * h + 2 * d;
      return text.num_hidden_layers * layer + h + text.vocab_size * h;
    })();
    const loraParams = text.num_hidden_layers * LORA.rank * (() => {
      const h = text.hidden_size, f = text.intermediate_size, q = text.num_attention_heads * text.head_dim, kv = text.num_key_value_heads * text.head_dim;
      return (h + q) * 2 + (h + kv) * 2 + (h + f) * 3;
    })();
    log(`${modelLabel}, ${dtype} on ${device}; sample ${image.sourceSize.width}×${image.sourceSize.height} → ${image.resizedSize.width}×${image.resizedSize.height}: ` +
      `${imageTokens} image tokens + ${textTokens.join('/')} text tokens (${answerTokens} supervised)`);

    const python = process.env.PIGG_HF_PYTHON;
    const hf = makeHf(python, runDir);
    let attention = null;
    const rows = [];
    const add = (bench, rowConfig, metric, unit, pigg, transformers, higherIsBetter) => {
      const ratio = pigg && transformers ? round(higherIsBetter ? pigg / transformers : transformers / pigg, 4) : null;
      rows.push({ bench, config: rowConfig, metric, unit, pigg: pigg ?? null, transformers: transformers ?? null, ratio });
    };
    // The results file is rewritten after every bench, so a run stopped from outside (a time box) keeps what it measured.
    const save = () => {
      const hfVersions = hf.versions();
      const versions = { torch: engine.torch, transformers: hfVersions?.transformers ?? null, pigg: JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version };
      if (hfVersions?.peft) versions.peft = hfVersions.peft;
      if (attention) versions['transformers attention'] = attention;
      const result = {
        command: `${python ? 'PIGG_HF_PYTHON=<python with transformers> ' : ''}node bench/gpu.mjs ${process.argv.slice(2).join(' ')}`.trim(),
        device: deviceString(device),
        date: new Date().toISOString(),
        versions,
        rows,
      };
      mkdirSync(outDir, { recursive: true });
      writeFileSync(join(outDir, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
    };
    const memUnit = cuda ? 'GiB' : 'MiB';
    const mem = (bytes) => (bytes === null || bytes === undefined ? null : round(bytes / (cuda ? 2 ** 30 : 2 ** 20), 4));
    const memName = cuda ? 'peak allocated (CUDA caching allocator)' : 'peak RSS';
    const failures = (p, h) => [p?.error && `pigg: ${p.error}`, h?.error && `transformers: ${h.error}`].filter(Boolean);
    const ok = (r) => (r && !r.error ? r : null);

    if (only.includes('train')) {
      for (const variant of variants) {
        const lora = variant === 'lora';
        log(`train: ${variant}`);
        const p = piggChild('train', { model: modelDir, device, dtype, variant, batches: trainFiles, steps, warmup, headLoss });
        // torch AdamW on bf16 weights keeps bf16 moments: pigg's 'pure'. master / kahan / stochastic have no twin.
        const twin = lora || variant === 'pure' || variant === 'full';
        const h = twin ? hf.call({ kind: 'bench', model: modelDir, dtype, device, checkpointing: true, batches: trainFiles, steps, warmup,
          learningRate: TRAIN.learningRate, lora: lora ? { r: LORA.rank, alpha: LORA.alpha, dropout: LORA.dropout, targets: LORA.targets } : null }) : null;
        if (ok(h)?.attention) attention = h.attention;
        const pr = ok(p), hr = ok(h);
        const tokens = pr?.inputTokens ?? trainTokens.reduce((a, b) => a + b, 0);
        const what = lora ? `LoRA r ${LORA.rank} α ${LORA.alpha} dropout ${LORA.dropout}` : `full fine-tune${variant === 'full' ? '' : `, update mode ${variant}`}`;
        const failed = failures(p, h);
        const rowConfig = `${modelLabel}, ${dtype}, ${what}, batch 1 × accumulation ${accum} (${tokens} input tokens/step: ${imageTokens} image + ~${Math.round(median(textTokens))} text per sample), checkpointing on${headLoss === 'plain' ? ', plain head loss (logits + cross-entropy)' : ''}` +
          (failed.length ? ` [${failed.join('; ')}]` : '');
        const flopsPerToken = lora ? 4 * textParams + 6 * loraParams : 6 * textParams;
        const mfu = (r) => (r && peakTflops ? round((100 * flopsPerToken * tokens) / (r.median * peakTflops * 1e12), 4) : null);
        add('train', rowConfig, `time per optimizer step (median of ${steps})`, 's', round(pr?.median), round(hr?.median), false);
        add('train', rowConfig, `of which clipping and the fused AdamW update (median of ${steps}; pigg only)`, 's', round(pr?.optimizerMedian), null, false);
        add('train', rowConfig, 'samples per second', 'samples/s', pr && round(accum / pr.median), hr && round(accum / hr.median), true);
        add('train', rowConfig, 'input tokens per second', 'tokens/s', pr && round(tokens / pr.median), hr && round(tokens / hr.median), true);
        const count = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : `${(n / 1e6).toFixed(2)}M`);
        const flopsName = lora ? `4·N + 6·N_lora FLOPs/token, N ${count(textParams)}, N_lora ${count(loraParams)}` : `6·N FLOPs/token, N ${count(textParams)}`;
        add('train', rowConfig, `MFU (${flopsName}${peakTflops ? `, peak ${peakTflops} TFLOP/s` : '; null: no peak on CPU'})`,
          '%', mfu(pr), mfu(hr), true);
        add('train', rowConfig, memName, memUnit, mem(pr?.peakBytes), mem(hr?.peakBytes), false);
        add('train', rowConfig, 'training memory above the loaded model', memUnit, pr && mem(pr.peakBytes - pr.baselineBytes), hr && mem(hr.peakBytes - hr.baselineBytes), false);
        if (pr) log(`  pigg ${pr.median.toFixed(3)} s/step, ${Math.round(tokens / pr.median)} tokens/s, peak ${mem(pr.peakBytes)} ${memUnit}, trainable ${pr.trainable}, loss ${pr.loss.toFixed(3)}`);
        if (hr) log(`  transformers ${hr.median.toFixed(3)} s/step, peak ${mem(hr.peakBytes)} ${memUnit}, trainable ${hr.trainable}, loss ${hr.losses.at(-1).toFixed(3)}`);
        save();
      }
    }

    const wantClick = only.includes('click');
    const wantEval = only.includes('eval');
    if (wantClick || wantEval) {
      log(`generate:${wantClick ? ' click (batch 1)' : ''}${wantEval ? ` eval (batch ${evalBatch})` : ''}`);
      const usePrompts = {};
      if (wantClick) usePrompts.click = prompts.click;
      if (wantEval) usePrompts.eval = prompts.eval;
      const p = piggChild('generate', { model: modelDir, device, dtype, prompts: usePrompts, newTokens, runs, warmup });
      const h = hf.call({ kind: 'bench_generate', model: modelDir, dtype, device, prompts: usePrompts, maxNewTokens: newTokens, runs, warmup });
      if (ok(h)?.attention) attention = h.attention;
      const pr = ok(p), hr = ok(h);
      const failed = failures(p, h);
      const note = failed.length ? ` [${failed.join('; ')}]` : '';
      if (wantClick) {
        const clickConfig = `${modelLabel}, ${dtype}, batch 1, prompt ${clickTensors.input_ids.shape[1]} tokens (${imageTokens} image), greedy, ${newTokens} new tokens${note}`;
        const perToken = (r) => (r ? round((r.click - r.prefill) / (newTokens - 1)) : null);
        add('click', clickConfig, `latency: prefill + ${newTokens} new tokens (median of ${runs})`, 's', round(pr?.click), round(hr?.click), false);
        add('click', clickConfig, `prefill: 1 new token (median of ${runs})`, 's', round(pr?.prefill), round(hr?.prefill), false);
        add('click', clickConfig, `decode time per new token ((latency − prefill) / ${newTokens - 1})`, 's', perToken(pr), perToken(hr), false);
        add('click', clickConfig, `decode tokens per second (pigg's own decode timing, static KV cache; median of ${runs})`, 'tokens/s', pr && round(1 / pr.clickDecodeStep), null, true);
      }
      if (wantEval) {
        const evalConfig = `${modelLabel}, ${dtype}, batch ${evalBatch} left-padded to ${evalTensors.input_ids.shape[1]} tokens (${imageTokens} image each), greedy, ${newTokens} new tokens${note}`;
        add('eval', evalConfig, `samples per second (median of ${runs})`, 'samples/s', pr && round(evalBatch / pr.eval), hr && round(evalBatch / hr.eval), true);
        add('eval', evalConfig, `decode tokens per second, all rows (pigg's own decode timing, static KV cache; median of ${runs})`, 'tokens/s', pr && round(evalBatch / pr.evalDecodeStep), null, true);
      }
      const genConfig = `${modelLabel}, ${dtype}, generation child: ${[wantClick && 'batch 1', wantEval && `batch ${evalBatch}`].filter(Boolean).join(' and ')}, ${newTokens} new tokens${note}`;
      add(wantEval ? 'eval' : 'click', genConfig, memName, memUnit, mem(pr?.peakBytes), mem(hr?.peakBytes), false);
      if (pr) log(`  pigg${wantClick ? ` click ${pr.click.toFixed(3)} s, prefill ${pr.prefill.toFixed(3)} s` : ''}${wantEval ? `, eval ${(evalBatch / pr.eval).toFixed(2)} samples/s` : ''}`);
      if (hr) log(`  transformers${wantClick ? ` click ${hr.click.toFixed(3)} s, prefill ${hr.prefill.toFixed(3)} s` : ''}${wantEval ? `, eval ${(evalBatch / hr.eval).toFixed(2)} samples/s` : ''}`);
      save();
    }

    if (only.includes('load')) {
      log('load');
      const p = piggChild('load', { model: modelDir, device, dtype, repeats: 2 });
      const h = hf.call({ kind: 'bench_load', model: modelDir, dtype, device, repeats: 2 });
      const pr = ok(p), hr = ok(h);
      const failed = failures(p, h);
      const gb = dirBytes(modelDir) / 1e9;
      const loadConfig = `${modelLabel}, ${dtype} safetensors (${gb.toPrecision(3)} GB) → ${dtype} on ${device}, warm page cache${failed.length ? ` [${failed.join('; ')}]` : ''}`;
      add('load', loadConfig, 'load time (second of two loads in one process)', 's', round(pr?.times.at(-1)), round(hr?.times.at(-1)), false);
      if (pr) log(`  pigg ${pr.times.map((t) => t.toPrecision(3)).join(', ')} s`);
      if (hr) log(`  transformers ${hr.times.map((t) => t.toPrecision(3)).join(', ')} s`);
    }

    save();
    log(`wrote ${join(outDir, `${name}.json`)} (${rows.length} rows)`);
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const spec = JSON.parse(process.argv[4]);
  await { init: childInit, train: childTrain, generate: childGenerate, load: childLoad }[process.argv[3]](spec);
} else {
  await main();
}
