// Qwen3VL: the typed JS face of the native engine. Inputs and outputs are named tensors
// ({dtype, shape, data: TypedArray}); outputs arrive without copying from the engine's memory.
import {
  native, type AdapterInfo, type CheckpointSummary, type ModelInfo, type NamedTensors, type NativeGrammar, type NativeLoadOptions, type NativeModel,
} from './native.js';
import { rowControls, withSignal } from './control.js';
import { checkSampling, type SamplingOptions } from './sampling.js';
import { Trainer, type TrainerOptions } from './trainer.js';

export type { AdapterInfo, CheckpointSummary, DeviceMemoryInfo, EngineDefaults, ModelConfigSummary, ModelInfo, NamedTensors } from './native.js';
export { engineDefaults } from './native.js';

export type LoadOptions = NativeLoadOptions;

export interface LoadCallOptions extends LoadOptions {
  /** Aborts loading between tensors. */
  signal?: AbortSignal;
  /** Called with the fraction of weights loaded (0..1) while loading. */
  onProgress?: (fraction: number) => void;
}

/** A byte-level DFA over the answer (lib/grounding/grammar.ts compiles it). */
export interface GrammarTables {
  states: number;
  start: number;
  transitions: Int32Array;
  accepting: Uint8Array;
}

/** Every token's bytes (lib/grounding/token-bytes.ts). */
export interface VocabularyBytes {
  vocabSize: number;
  offsets: Int32Array;
  bytes: Uint8Array;
  special: Uint8Array;
}

/** A grammar compiled into the engine for constrained decoding; pass it per row in generate's `grammars`. */
export class GrammarHandle {
  /** @internal */
  constructor(readonly native: NativeGrammar, readonly states: number) {}
}

/** The forward outputs the engine can return (names of the fixture layout). */
export const FORWARD_OUTPUTS = [
  'position_ids', 'rope_deltas', 'rope_deltas_unpadded', 'vision_patch_embed', 'vision_pos_embed', 'vision_rotary_cos',
  'vision_rotary_sin', 'vision_blocks_out', 'image_embeds', 'deepstack_embeds', 'inputs_embeds', 'text_rotary_cos',
  'text_rotary_sin', 'decoder_layer_outputs', 'last_hidden_state', 'logits', 'loss',
] as const;
export type ForwardOutput = (typeof FORWARD_OUTPUTS)[number];

/** What a generate call leaves out takes the engine's default (engineDefaults().generate). */
export interface GenerateOptions {
  maxNewTokens?: number;
  /** Stop ids; defaults to the model's (config.json + generation_config.json). An empty array never stops early. */
  eosTokenIds?: number[];
  returnStepLogits?: boolean;
  /** Per row: a registered adapter's name, or null for the base model. */
  adapters?: Array<string | null>;
  /** Per row: constrained decoding with a grammar (null: unconstrained). */
  grammars?: Array<GrammarHandle | null>;
  /** Per row: sampling settings (null: greedy, the default for every row). */
  sampling?: Array<SamplingOptions | null>;
  /** Aborts the whole call within one layer or decode step; it rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Per row: aborting one stops that row alone (flagged in `aborted`). */
  rowSignals?: Array<AbortSignal | undefined>;
  /**
   * Streaming: called with each step's token of every row while decoding (finished rows repeat the pad id).
   * Calls can arrive after the promise settles; the result's tokens are the complete answer.
   */
  onStep?: (tokens: number[]) => void;
}

export interface GenerateResult {
  /** Generated ids per row (finished rows are padded with the pad id, as transformers does). */
  tokens: number[][];
  tensors: NamedTensors;
  /** Per row: stopped by its row signal. */
  aborted: boolean[];
  /** Seconds, device-synchronized: the vision tower, the prefill of the prompts, the decode steps. */
  timing: { vision: number; prefill: number; decode: number };
}

export class Qwen3VL {
  private constructor(private handle: NativeModel | null) {}

  static async load(dir: string, options: LoadCallOptions = {}): Promise<Qwen3VL> {
    const { signal, onProgress, ...load } = options;
    if (!onProgress) return new Qwen3VL(await withSignal(signal, (control) => native().load(dir, load, control)));
    // Progress is polled from the loading call's control (no callback into JS from the worker thread).
    const control = native().createControl();
    let reported = -1;
    const report = () => {
      const fraction = control.progress();
      if (fraction !== reported) onProgress((reported = fraction));
    };
    const timer = setInterval(report, 50);
    const cancel = () => control.cancel();
    signal?.throwIfAborted();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const handle = await native().load(dir, load, control);
      report();
      return new Qwen3VL(handle);
    } catch (error) {
      if (signal?.aborted && (error as Error).name === 'AbortError') throw signal.reason;
      throw error;
    } finally {
      clearInterval(timer);
      signal?.removeEventListener('abort', cancel);
    }
  }

  private live(): NativeModel {
    if (!this.handle) throw new Error('the model was disposed');
    return this.handle;
  }

  async info(): Promise<ModelInfo> {
    return this.live().info();
  }

  /** Runs the model; `outputs` names what to return (default: logits, plus loss when labels are given). */
  async forward(inputs: NamedTensors, options: { outputs?: readonly ForwardOutput[]; signal?: AbortSignal } = {}): Promise<NamedTensors> {
    const outputs = options.outputs ?? (inputs.labels ? ['logits', 'loss'] : ['logits']);
    const handle = this.live();
    return withSignal(options.signal, (control) => handle.forward(inputs, [...outputs], control));
  }

  /** Greedy or sampled decoding of left-padded prompts (input_ids, attention_mask, pixel_values, image_grid_thw). */
  async generate(inputs: NamedTensors, options: GenerateOptions = {}): Promise<GenerateResult> {
    const { signal, rowSignals, grammars, sampling, ...rest } = options;
    const handle = this.live();
    const rows = rowControls(rowSignals ?? []);
    try {
      const tensors = await withSignal(signal, (control) =>
        handle.generate(inputs, { ...rest, grammars: grammars?.map((g) => g?.native ?? null), sampling: sampling?.map((s) => s && checkSampling(s)), rowControls: rowSignals ? rows.controls : undefined }, control));
      const tokens = tensors['generate.tokens'];
      const [count, steps] = tokens.shape;
      const data = tokens.data as BigInt64Array;
      const [vision, prefill, decode] = tensors['generate.timing'].data as Float64Array;
      return {
        tokens: Array.from({ length: count }, (_, r) => Array.from(data.subarray(r * steps, (r + 1) * steps), Number)),
        tensors,
        aborted: Array.from(tensors['generate.aborted'].data as Uint8Array, Boolean),
        timing: { vision, prefill, decode },
      };
    } finally {
      rows.release();
    }
  }

  /** Attaches a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) into the model itself. */
  loadAdapter(dir: string): Promise<void> {
    return this.live().loadAdapter(dir);
  }

  /**
   * Keeps a PEFT LoRA adapter beside the base weights under `name` (replacing one of that name); generate rows
   * pick it through `adapters`. Reading the folder does not wait for running calls.
   */
  async registerAdapter(name: string, dir: string): Promise<AdapterInfo> {
    return this.live().registerAdapter(name, dir);
  }

  /** Forgets a registered adapter (a batch using it finishes with it); false when none had that name. */
  unregisterAdapter(name: string): boolean {
    return this.live().unregisterAdapter(name);
  }

  adapters(): AdapterInfo[] {
    return this.live().adapters();
  }

  /** Bytes of adapters kept on the device, least recently used dropped first (negative: no limit). */
  setAdapterBudget(bytes: number): void {
    this.live().setAdapterBudget(bytes);
  }

  /** Compiles a grammar for constrained decoding; its token masks are built once per state and cached. */
  createGrammar(grammar: GrammarTables, tokens: VocabularyBytes, eosIds: readonly number[]): GrammarHandle {
    const handle = native().createGrammar({
      states: grammar.states, start: grammar.start, transitions: grammar.transitions, accepting: grammar.accepting,
      vocabSize: tokens.vocabSize, offsets: tokens.offsets, bytes: tokens.bytes, special: tokens.special, eosIds: [...eosIds],
    });
    return new GrammarHandle(handle, grammar.states);
  }

  /** A trainer over this model's weights (they are updated in place; LoRA adapters attach to this model). */
  async createTrainer(options: TrainerOptions = {}): Promise<Trainer> {
    const { onStep, ...native } = options;
    return new Trainer(await this.live().createTrainer(native), onStep);
  }

  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Validates a checkpoint folder (config, safetensors headers, names and shapes) without loading its data. */
export async function inspectCheckpoint(dir: string): Promise<CheckpointSummary> {
  return native().inspect(dir);
}

export function engineVersions(): { torch: string; cuda: boolean } {
  return JSON.parse(native().versions());
}
