import { describe, expect, it } from 'vitest';
import {
  buildInstructionPrompt,
  formatAnswer,
  parseAnswer,
  parsePiggInference,
  type ParseFormat,
} from '../lib/data/parse.js';

type Row = [name: string, text: string, x: number, y: number, format: ParseFormat, referring?: string | null];

const ECHO =
  'system\nYou are a helpful assistant.\nuser\nGiven a GUI image, what are the relative (0-1000) pixel point coordinates ' +
  'for the element corresponding to the following instruction: open the alarm\n\n### Output (Example)\n' +
  '```referring\n"left arrow"\n```\n```grounding\n(100, 200)\n```\nassistant\n';

const ROWS: Row[] = [
  ['pigg gold answer', '```referring\nblue plus button\n```\n```grounding\n[311, 541]\n```', 311, 541, 'grounding', 'blue plus button'],
  ['pigg with round brackets', '```referring\n"left arrow"\n```\n```grounding\n(120, 45)\n```', 120, 45, 'grounding', '"left arrow"'],
  ['pigg bare numbers', '```referring\nsend\n```\n```grounding\n640, 910\n```', 640, 910, 'grounding', 'send'],
  ['echoed prompt is cut at assistant', `${ECHO}\`\`\`referring\nalarm tab\n\`\`\`\n\`\`\`grounding\n[512, 944]\n\`\`\``, 512, 944, 'grounding', 'alarm tab'],
  ['im_start marker', '<|im_start|>user\n(1, 2)<|im_end|>\n<|im_start|>assistant\n```grounding\n[30, 40]\n```', 30, 40, 'grounding', null],
  ['referring mentioning assistant survives', `${ECHO}\`\`\`referring\nthe assistant button\n\`\`\`\n\`\`\`grounding\n[500, 600]\n\`\`\``, 500, 600, 'grounding', 'the assistant button'],
  ['think block dropped', '<think>maybe (1, 1)?</think>\n```grounding\n[222, 333]\n```', 222, 333, 'grounding', null],
  ['step-by-step text before blocks', 'First I look at the top bar (the header).\n```referring\nsearch icon\n```\n```grounding\n[903, 61]\n```', 903, 61, 'grounding', 'search icon'],
  ['grounding 4-value box gives centre', '```grounding\n(100, 200, 300, 400)\n```', 200, 300, 'grounding', null],
  ['grounding "to" box', '```grounding\n(10, 20) to (30, 40)\n```', 20, 30, 'grounding', null],
  ['grounding Top-left/Bottom-right', '```grounding\nTop-left: (15, 25), Bottom-right: (35, 45)\n```', 25, 35, 'grounding', null],
  ['grounding floats', '```grounding\n[311.7, 541.2]\n```', 311.7, 541.2, 'grounding', null],
  ['grounding truncated (no closing fence)', '```referring\nok button\n```\n```grounding\n[700, 820]', 700, 820, 'grounding', 'ok button'],
  ['grounding with full-width comma', '```grounding\n[311，541]\n```', 311, 541, 'grounding', null],
  ['qwen json point_2d', '```json\n[\n\t{"point_2d": [455, 128], "label": "Wi-Fi toggle"}\n]\n```', 455, 128, 'json', 'Wi-Fi toggle'],
  ['qwen json bbox_2d gives centre', '```json\n[{"bbox_2d": [100, 100, 300, 200], "label": "banner"}]\n```', 200, 150, 'json', 'banner'],
  ['bare json object', '{"point_2d": [12, 34]}', 12, 34, 'json', null],
  ['json with escaped label', '[{"point_2d":[50,60],"label":"\\"Save\\" 按钮"}]', 50, 60, 'json', '"Save" 按钮'],
  ['tool_call coordinate', '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [540, 1200]}}\n</tool_call>', 540, 1000, 'tool_call', null],
  ['tool_call computer_use', 'Thought: click it\n<tool_call>{"name":"computer_use","arguments":{"action":"left_click","coordinate":[88.5, 912]}}</tool_call>', 88.5, 912, 'tool_call', null],
  ['click(x, y)', 'Action: click(336, 567)', 336, 567, 'click', null],
  ['click(coordinates=...) with content', "click(coordinates=(311, 541), content='蓝色加号按钮')", 311, 541, 'click', '蓝色加号按钮'],
  ['click(x=, y=)', 'pyautogui.click(x=0.25, y=0.75)', 0.25, 0.75, 'click', null],
  ['long_press', 'long_press(410, 77)', 410, 77, 'click', null],
  ['UI-TARS start_box with box tokens', "Action: click(start_box='<|box_start|>(235,512)<|box_end|>')", 235, 512, 'start_box', null],
  ['UI-TARS start_box without tokens', "click(start_box='(235,512)')", 235, 512, 'start_box', null],
  ['UI-TARS start_box box', "click(start_box='[100,100,200,300]')", 150, 200, 'start_box', null],
  ['plain (x, y)', 'The element is at (640, 88).', 640, 88, 'pair', null],
  ['plain [x, y] floats', 'Answer: [12.5, 99.25]', 12.5, 99.25, 'pair', null],
  ['plain 4-tuple gives centre', '[0, 0, 100, 50]', 50, 25, 'pair', null],
  ['values above the grid are clamped', '```grounding\n[1200, 1500]\n```', 1000, 1000, 'grounding', null],
  ['negative values are clamped', '(-20, 30)', 0, 30, 'pair', null],
  ['garbage', 'I cannot find that element on the screen.', 0, 0, 'none', null],
  ['empty', '', 0, 0, 'none', null],
  ['prompt-only echo with no answer', `${ECHO}`, 0, 0, 'none', null],
  ['grounding block without numbers falls through', '```grounding\nnot visible\n```\nmaybe (5, 6)', 5, 6, 'pair', null],
];

describe('parseAnswer', () => {
  it('has a realistic table of at least 30 outputs', () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(30);
  });

  it.each(ROWS)('%s', (_name, text, x, y, format, referring) => {
    const parsed = parseAnswer(text);
    expect(parsed.format).toBe(format);
    expect(parsed.ok).toBe(format !== 'none');
    expect(parsed.x).toBeCloseTo(x, 10);
    expect(parsed.y).toBeCloseTo(y, 10);
    if (referring !== undefined) expect(parsed.referring).toBe(referring);
  });

  it('clamps to a custom scale', () => {
    expect(parseAnswer('(1.5, 0.4)', { scale: 1 })).toMatchObject({ x: 1, y: 0.4, ok: true });
  });
});

describe('parsePiggInference matches PIGG parse_inference (values from CPython)', () => {
  const cases: Array<[text: string, isGt: boolean, expected: [string, number, number]]> = [
    ['```referring\nblue plus button\n```\n```grounding\n[311, 541]\n```', true, ['blue plus button', 311, 541]],
    [
      'system\nGiven a GUI image ... (100, 200)\nuser\nx\nassistant\n```referring\n"left arrow"\n```\n```grounding\n(120, 45)\n```',
      false,
      ['"left arrow"', 120, 45],
    ],
    ['```referring\nbox\n```\n```grounding\n(100, 200, 300, 400)\n```', true, ['box', 100, 200]],
    ['```grounding\n(10, 20) to (30, 40)\n```', true, ['None', 10, 20]],
    ['```grounding\nTop-left corner: (15, 25), Bottom-right corner: (35, 45)\n```', true, ['None', 15, 25]],
    ['```grounding\n[311.7, 541.2]\n```', true, ['None', 7, 541]],
    ['```grounding\n[311, 541]', true, ['None', 0, 0]],
    ['grounding: [311, 541]', true, ['None', 0, 0]],
    ['```referring\nGoogle Assistant icon\n```\n```grounding\n[500, 600]\n```', false, ['Google Assistant icon', 500, 600]],
    ['```grounding\n[３１１, ５４１]\n```', true, ['None', 311, 541]],
    ['```grounding\nno idea\n```\n```grounding\n[1, 2]\n```', true, ['None', 0, 0]],
    ['```referring\na\n```\n```referring\nb\n```\n```grounding\n7, 8\n```', true, ['b', 7, 8]],
    ['```referring\nthe assistant button\n```\n```grounding\n[500, 600]\n```', false, ['None', 500, 600]],
  ];
  it.each(cases)('%j', (text, isGt, [content, x, y]) => {
    expect(parsePiggInference(text, isGt)).toEqual({ content, x, y });
  });
});

describe('formatAnswer', () => {
  it('writes PIGG gold text exactly', () => {
    expect(formatAnswer({ x: 311, y: 541 }, 'blue plus button', 'pigg')).toBe(
      '```referring\nblue plus button\n```\n```grounding\n[311, 541]\n```',
    );
    expect(formatAnswer({ x: 10.5, y: 11.5 }, null, 'pigg')).toBe('```grounding\n[10, 12]\n```');
  });

  it('writes Qwen JSON with an escaped label', () => {
    expect(formatAnswer({ x: 455, y: 128 }, 'the "Wi-Fi" tile', 'qwen-json')).toBe(
      '```json\n[\n\t{"point_2d": [455, 128], "label": "the \\"Wi-Fi\\" tile"}\n]\n```',
    );
    expect(formatAnswer({ x: 1, y: 2 }, null, 'qwen-json')).toBe('```json\n[\n\t{"point_2d": [1, 2]}\n]\n```');
  });

  const points = [
    { x: 0, y: 0 },
    { x: 1000, y: 1000 },
    { x: 311.4, y: 541.6 },
    { x: 499.5, y: 0.49 },
    { x: 12, y: 987 },
  ];
  const referrings = ['blue plus button', '蓝色加号按钮', 'say "hi", then (1, 2)'];
  it.each(['pigg', 'qwen-json'] as const)('round-trips %s within 1 grid unit', (style) => {
    for (const point of points) {
      for (const referring of referrings) {
        const parsed = parseAnswer(formatAnswer(point, referring, style));
        expect(parsed.ok).toBe(true);
        expect(Math.abs(parsed.x - point.x)).toBeLessThanOrEqual(1);
        expect(Math.abs(parsed.y - point.y)).toBeLessThanOrEqual(1);
        expect(parsed.referring).toBe(referring);
      }
    }
  });

  it('PIGG gold answers also parse with the exact PIGG parser', () => {
    expect(parsePiggInference(formatAnswer({ x: 311, y: 541 }, 'blue plus button', 'pigg'))).toEqual({
      content: 'blue plus button',
      x: 311,
      y: 541,
    });
  });
});

describe('buildInstructionPrompt', () => {
  it('builds the PIGG prompt with its output example', () => {
    expect(buildInstructionPrompt('打开闹钟', 'pigg')).toBe(
      'Given a GUI image, what are the relative (0-1000) pixel point coordinates for the element corresponding to the ' +
        'following instruction: 打开闹钟\n\nThink step-by-step, provide referring for the element first and then the ' +
        'grounded point coordinates.\n\n### Output (Example)\n```referring\n"left arrow"\n```\n```grounding\n(100, 200)\n```',
    );
  });

  it('can leave the example out', () => {
    expect(buildInstructionPrompt('x', 'pigg', { example: false })).toMatch(/point coordinates\.$/);
  });

  it('a model echoing the PIGG prompt does not parse as the example point', () => {
    const echoed = `user\n${buildInstructionPrompt('x', 'pigg')}\nassistant\n`;
    expect(parseAnswer(echoed).ok).toBe(false);
  });

  it('builds a Qwen JSON prompt naming point_2d and the instruction', () => {
    const prompt = buildInstructionPrompt('turn on Wi-Fi', 'qwen-json');
    expect(prompt).toContain('"point_2d"');
    expect(prompt.endsWith('Instruction: turn on Wi-Fi')).toBe(true);
  });
});
