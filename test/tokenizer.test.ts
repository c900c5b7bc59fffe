import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QWEN3_VL_CHAT_TEMPLATE } from '../lib/processor/chat-template.js';
import { bundledTokenizerDir, QwenTokenizer, writeTokenizerFiles, type ChatMessage } from '../lib/processor/tokenizer.js';

// Expected ids were produced with the Rust `tokenizers` library (Python binding 0.23) on the same tokenizer.json.
const tokenizer = QwenTokenizer.bundled();
const scratch = mkdtempSync(join(tmpdir(), 'pigg-tokenizer-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const USER_TURN: ChatMessage = { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Tap the search button' }] };

describe('QwenTokenizer.encode / decode', () => {
  it.each([
    ['Tap the search button', [23879, 279, 2711, 3137]],
    ['打开设置，然后点击“蓝牙”', [104089, 43918, 3837, 101889, 72651, 2073, 116463, 854]],
    ['<|im_start|>user\nhi<|im_end|>', [151644, 872, 198, 6023, 151645]],
    ['```grounding\n[512, 87]\n```', [73594, 1951, 287, 198, 58, 20, 16, 17, 11, 220, 23, 22, 921, 73594]],
    [' leading  spaces\n\n\ttab', [6388, 220, 12621, 271, 58149]],
    ['émoji 👍🏽 ok', [963, 6355, 7754, 61804, 235, 145375, 5394]],
    ['[{"point_2d": [512, 87], "label": "search button"}]', [58, 4913, 2768, 62, 17, 67, 788, 508, 20, 16, 17, 11, 220, 23, 22, 1125, 330, 1502, 788, 330, 1836, 3137, 9207, 60]],
    ["don't it's WE'LL", [15007, 944, 432, 594, 19677, 6, 4086]],
  ])('encodes %j exactly (no BOS)', (text, ids) => {
    expect(tokenizer.encode(text)).toEqual(ids);
  });

  it('decodes back to the text, optionally without special tokens', () => {
    const text = '<|im_start|>user\nhi 打开 👍🏽<|im_end|>';
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    expect(tokenizer.decode(tokenizer.encode(text), { skipSpecialTokens: true })).toBe('user\nhi 打开 👍🏽');
    expect(tokenizer.decode(Int32Array.from([23879, 279, 2711, 3137]))).toBe('Tap the search button');
  });

  it('knows the special token ids of spec §7.1', () => {
    const table: Record<string, number> = {
      '<|endoftext|>': 151643, '<|im_start|>': 151644, '<|im_end|>': 151645, '<|object_ref_start|>': 151646,
      '<|object_ref_end|>': 151647, '<|box_start|>': 151648, '<|box_end|>': 151649, '<|quad_start|>': 151650,
      '<|quad_end|>': 151651, '<|vision_start|>': 151652, '<|vision_end|>': 151653, '<|vision_pad|>': 151654,
      '<|image_pad|>': 151655, '<|video_pad|>': 151656, '<tool_call>': 151657, '</tool_call>': 151658,
      '<tool_response>': 151665, '</tool_response>': 151666, '<think>': 151667, '</think>': 151668,
      system: 8948, user: 872, assistant: 77091, '\u010a': 198,
    };
    for (const [token, id] of Object.entries(table)) expect(tokenizer.tokenId(token)).toBe(id);
    expect(tokenizer.imStartId).toBe(151644);
    expect(tokenizer.imEndId).toBe(151645);
    expect(tokenizer.endOfTextId).toBe(151643);
    expect(tokenizer.padId).toBe(151643);
    expect(tokenizer.visionStartId).toBe(151652);
    expect(tokenizer.visionEndId).toBe(151653);
    expect(tokenizer.imagePadId).toBe(151655);
    expect(tokenizer.videoPadId).toBe(151656);
    expect(tokenizer.eosIds).toEqual([151645, 151643]);
    expect(() => tokenizer.tokenId('<|no_such_token|>')).toThrow("token '<|no_such_token|>' is not in the vocabulary");
  });
});

describe('chat template (spec §7.2)', () => {
  it('is the Qwen3-VL Instruct template', () => {
    expect(createHash('sha256').update(QWEN3_VL_CHAT_TEMPLATE).digest('hex')).toBe('3636d0f0bd6bef02654cdffdc447b79cb2cef8ab02cc75267345946291a489e4');
    expect(tokenizer.chatTemplate).toBe(QWEN3_VL_CHAT_TEMPLATE);
    expect(tokenizer.chatTemplateSource).toBe('builtin');
  });

  it('renders one image + instruction with the generation prompt', () => {
    expect(tokenizer.applyChatTemplate([USER_TURN], { addGenerationPrompt: true })).toBe(
      '<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Tap the search button<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('renders a system message only when given (no default system prompt)', () => {
    expect(tokenizer.applyChatTemplate([{ role: 'system', content: 'You are a helpful assistant.' }, USER_TURN], { addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Tap the search button<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('renders without the generation prompt, and a training sample with its answer', () => {
    expect(tokenizer.applyChatTemplate([USER_TURN])).toBe('<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Tap the search button<|im_end|>\n');
    expect(tokenizer.applyChatTemplate([USER_TURN, { role: 'assistant', content: '[500, 300]' }])).toBe(
      '<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Tap the search button<|im_end|>\n<|im_start|>assistant\n[500, 300]<|im_end|>\n',
    );
  });

  it('matches Python Jinja on list-valued system/assistant content and a second user turn', () => {
    const rendered = tokenizer.applyChatTemplate(
      [
        { role: 'system', content: [{ type: 'text', text: 'A' }, { type: 'text', text: 'B' }] },
        USER_TURN,
        { role: 'assistant', content: [{ type: 'text', text: 'x' }] },
        { role: 'user', content: 'more' },
      ],
      { addGenerationPrompt: true },
    );
    expect(rendered).toBe(
      '<|im_start|>system\nAB<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Tap the search button<|im_end|>\n<|im_start|>assistant\nx<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('tokenizes the rendered prompt with N image pads to the ids of spec §7.2', () => {
    const n = 6;
    const text = tokenizer.applyChatTemplate([USER_TURN], { addGenerationPrompt: true }).replace('<|image_pad|>', '<|image_pad|>'.repeat(n));
    expect(tokenizer.encode(text)).toEqual([
      151644, 872, 198, 151652, ...Array(n).fill(151655), 151653, 23879, 279, 2711, 3137, 151645, 198, 151644, 77091, 198,
    ]);
  });
});

describe('model folders', () => {
  it('writeTokenizerFiles makes a folder that loads with the VL template from chat_template.json', () => {
    const dir = join(scratch, 'model');
    writeTokenizerFiles(dir);
    const loaded = QwenTokenizer.fromDir(dir);
    expect(loaded.chatTemplateSource).toBe('chat_template.json');
    expect(loaded.chatTemplate).toBe(QWEN3_VL_CHAT_TEMPLATE);
    expect(JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')).chat_template).toBe(QWEN3_VL_CHAT_TEMPLATE);
    expect(readFileSync(join(dir, 'tokenizer.json')).equals(readFileSync(join(bundledTokenizerDir(), 'tokenizer.json')))).toBe(true);
    expect(loaded.encode('Tap the search button')).toEqual([23879, 279, 2711, 3137]);
  });

  it('prefers chat_template.json, then chat_template.jinja, then tokenizer_config.json', () => {
    const dir = join(scratch, 'order');
    writeTokenizerFiles(dir);
    writeFileSync(join(dir, 'chat_template.jinja'), 'jinja{{ messages | length }}');
    expect(QwenTokenizer.fromDir(dir).chatTemplateSource).toBe('chat_template.json');
    rmSync(join(dir, 'chat_template.json'));
    const fromJinja = QwenTokenizer.fromDir(dir);
    expect(fromJinja.chatTemplateSource).toBe('chat_template.jinja');
    expect(fromJinja.applyChatTemplate([USER_TURN])).toBe('jinja1');
    rmSync(join(dir, 'chat_template.jinja'));
    expect(QwenTokenizer.fromDir(dir).chatTemplateSource).toBe('tokenizer_config.json');
  });

  it('falls back to the built-in VL template when the folder has none', () => {
    const dir = join(scratch, 'bare');
    writeTokenizerFiles(dir);
    rmSync(join(dir, 'chat_template.json'));
    rmSync(join(dir, 'tokenizer_config.json'));
    const loaded = QwenTokenizer.fromDir(dir);
    expect(loaded.chatTemplateSource).toBe('builtin');
    expect(loaded.padId).toBe(151643);
  });

  it('names the folder when tokenizer.json is missing', () => {
    expect(() => QwenTokenizer.fromDir(join(scratch, 'nothing'))).toThrow(`${join(scratch, 'nothing')} has no tokenizer.json`);
  });
});
