// Answer formats: PIGG's prompt and fenced ```referring``` / ```grounding``` answer, Qwen3-VL's point_2d JSON,
// and a parser for model output. parsePiggInference is PIGG's parse_inference (src/utils/eval.py) exactly;
// parseAnswer is the robust parser (datasets.md §3) used by our evaluation.
import { roundHalfEven } from './metrics.js';
import type { Point } from './types.js';

export type AnswerStyle = 'pigg' | 'qwen-json';
export const ANSWER_STYLES: readonly AnswerStyle[] = ['pigg', 'qwen-json'];

export type ParseFormat = 'grounding' | 'json' | 'tool_call' | 'start_box' | 'click' | 'pair' | 'none';

export interface ParsedAnswer {
  /** Grid coordinates clamped to [0, scale]; (0, 0) when ok is false, as PIGG scores a failure. */
  x: number;
  y: number;
  referring: string | null;
  ok: boolean;
  format: ParseFormat;
}

// PIGG's prompt (specifications/1_vanilla: the Korean original keeps the output example inside the prompt
// block, and §4.1 says the prompt shows the output format).
const PIGG_PROMPT_HEAD =
  'Given a GUI image, what are the relative (0-1000) pixel point coordinates for the element corresponding to the following instruction: ';
const PIGG_PROMPT_TAIL =
  'Think step-by-step, provide referring for the element first and then the grounded point coordinates.';
const PIGG_PROMPT_EXAMPLE = '### Output (Example)\n```referring\n"left arrow"\n```\n```grounding\n(100, 200)\n```';

export interface PromptOptions {
  /** PIGG style only: append PIGG's output example (default true). */
  example?: boolean;
}

export function buildInstructionPrompt(instruction: string, style: AnswerStyle, options: PromptOptions = {}): string {
  if (style === 'pigg') {
    const prompt = `${PIGG_PROMPT_HEAD}${instruction}\n\n${PIGG_PROMPT_TAIL}`;
    return options.example === false ? prompt : `${prompt}\n\n${PIGG_PROMPT_EXAMPLE}`;
  }
  return (
    'Point to the element in this GUI screenshot that should be clicked for the following instruction, ' +
    'and output its point coordinates (relative, 0-1000) in JSON format with "point_2d" and "label".\n' +
    `Instruction: ${instruction}`
  );
}

/** The gold answer text for a grid point (rounded to integers, as PIGG's answers are). */
export function formatAnswer(point: Point, referring: string | null, style: AnswerStyle): string {
  const x = roundHalfEven(point.x);
  const y = roundHalfEven(point.y);
  if (style === 'pigg') {
    const grounding = `\`\`\`grounding\n[${x}, ${y}]\n\`\`\``;
    return referring === null ? grounding : `\`\`\`referring\n${referring}\n\`\`\`\n${grounding}`;
  }
  const label = referring === null ? '' : `, "label": ${JSON.stringify(referring)}`;
  return `\`\`\`json\n[\n\t{"point_2d": [${x}, ${y}]${label}}\n]\n\`\`\``;
}

// ---------------------------------------------------------------------------------------------------------
// PIGG's parse_inference, kept exact for comparisons with PIGG's numbers (ints only, a box yields its first
// corner, anything unparsed yields (0, 0) and the referring "None"). Python's \d matches any Unicode digit.

const PIGG_PATTERNS: readonly RegExp[] = [
  /\(?(\p{Nd}+)\s*,\s*(\p{Nd}+)\s*,\s*(\p{Nd}+)\s*,\s*(\p{Nd}+)\)?/u,
  /\(?(\p{Nd}+)\s*,\s*(\p{Nd}+)\)?\s*to\s*\(?(\p{Nd}+)\s*,\s*(\p{Nd}+)\)?/u,
  /(?:Top-left|Bottom-right)[^:]*:\s*\(?(\p{Nd}+)\s*,\s*(\p{Nd}+)\)?/u,
  /\[?(\p{Nd}+)\s*,\s*(\p{Nd}+)\]?/u,
  /\(?(\p{Nd}+)\s*,\s*(\p{Nd}+)\)?/u,
];

/** int() of a run of Unicode digits; NFKC maps full-width and other compatibility digits to ASCII. */
function pythonInt(digits: string): number {
  const ascii = digits.normalize('NFKC');
  return /^[0-9]+$/.test(ascii) ? Number.parseInt(ascii, 10) : Number.NaN;
}

export function parsePiggInference(text: string, isGt = true): { content: string; x: number; y: number } {
  if (!isGt) text = text.split('assistant').at(-1)!;
  const referring = [...text.matchAll(/```referring\n([\s\S]*?)\n```/g)];
  const content = referring.length > 0 ? referring.at(-1)![1]! : 'None';
  let x = 0;
  let y = 0;
  const blocks = text.includes('grounding') ? text.split('```grounding') : [text];
  for (const block of blocks.slice(1)) {
    if (!block.includes('```')) continue;
    const body = block.split('```')[0]!;
    for (const pattern of PIGG_PATTERNS) {
      const match = pattern.exec(body);
      if (!match) continue;
      const nums = match.slice(1).flatMap((g) => (g === undefined ? [] : [pythonInt(g)]));
      if (nums.length >= 2) [x, y] = [nums[0]!, nums[1]!];
      break;
    }
    break;
  }
  return { content, x, y };
}

// ---------------------------------------------------------------------------------------------------------
// Robust parser.

const NUM = String.raw`([-+]?\d+(?:\.\d+)?)`;
const SEP = String.raw`\s*[,，]\s*`;
const PAIR = `${NUM}${SEP}${NUM}`;
const QUAD = `${NUM}${SEP}${NUM}${SEP}${NUM}${SEP}${NUM}`;

// Grounding-block patterns in PIGG's order; the box forms (4 values, "a to b", Top-left..Bottom-right) keep
// four values and so give their centre, where PIGG keeps the first corner.
const BLOCK_PATTERNS: readonly RegExp[] = [
  new RegExp(QUAD),
  new RegExp(`${PAIR}\\s*[\\])]?\\s*to\\s*[\\[(]?\\s*${PAIR}`),
  new RegExp(`Top-left[^:]*:\\s*[\\[(]?\\s*${PAIR}[\\s\\S]*?Bottom-right[^:]*:\\s*[\\[(]?\\s*${PAIR}`, 'i'),
  new RegExp(`(?:Top-left|Bottom-right)[^:]*:\\s*[\\[(]?\\s*${PAIR}`, 'i'),
  new RegExp(PAIR),
];

const JSON_POINT = new RegExp(
  String.raw`"(?:point_2d|bbox_2d|coordinates?|point|bbox|position)"\s*:\s*\[\s*${PAIR}(?:${SEP}${PAIR})?\s*\]`,
);
const START_BOX = new RegExp(
  String.raw`(?:start_box\s*=\s*['"]?\s*(?:<\|box_start\|>)?|<\|box_start\|>)\s*[\[(]\s*${PAIR}(?:${SEP}${PAIR})?\s*[\])]`,
);
const CLICK = new RegExp(
  String.raw`\b(?:click|long_click|long_press|double_click|tap|left_double|right_single)\s*\(\s*(?:(?:coordinates?|point|position|x)\s*=\s*)?[\[(]?\s*${NUM}${SEP}(?:y\s*=\s*)?${NUM}`,
);
const BRACKET_PAIR = new RegExp(String.raw`[\[(]\s*${PAIR}(?:${SEP}${PAIR})?\s*[\])]`);

// The echoed prompt ends at the last chat-template assistant marker: "assistant" alone on its line (as decoded
// with skip_special_tokens) or "<|im_start|>assistant" or "Assistant:". Unlike PIGG's split("assistant"), a
// referring text that merely contains the word is left alone.
const ASSISTANT_MARKER = /(?:^|\n)[ \t]*(?:<\|im_start\|>)?assistant[ \t]*(?::|\r?\n|$)/gi;

function answerPart(text: string): string {
  let start = 0;
  for (const match of text.matchAll(ASSISTANT_MARKER)) start = match.index + match[0].length;
  let answer = text.slice(start);
  const think = answer.lastIndexOf('</think>');
  if (think >= 0) answer = answer.slice(think + '</think>'.length);
  return answer;
}

function numbers(match: RegExpExecArray): number[] {
  return match
    .slice(1)
    .filter((g): g is string => g !== undefined)
    .map(Number);
}

/** Two values are a point; four are a box [x1, y1, x2, y2] and give its centre. */
function centre(values: number[]): [number, number] {
  return values.length >= 4 ? [(values[0]! + values[2]!) / 2, (values[1]! + values[3]!) / 2] : [values[0]!, values[1]!];
}

function jsonLabel(text: string): string | null {
  const match = /"label"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(text);
  if (!match) return null;
  try {
    return JSON.parse(`"${match[1]}"`) as string;
  } catch {
    return match[1]!;
  }
}

function clickContent(text: string): string | null {
  const match = /\bcontent\s*=\s*(['"])([\s\S]*?)\1\s*\)/.exec(text);
  return match ? match[2]! : null;
}

export interface ParseOptions {
  /** Upper end of the coordinate scale; values are clamped to [0, scale]. Default 1000 (the grid). */
  scale?: number;
}

/**
 * Parses a model answer (or a gold answer) into a grid point. Order (datasets.md §3): a ```grounding block,
 * JSON point_2d/bbox_2d/coordinate (inside <tool_call> or not), start_box / <|box_start|>, click(...), then the
 * first bracketed (x, y) / [x, y] pair. Ints and floats are accepted; a box becomes its centre.
 */
export function parseAnswer(text: string, options: ParseOptions = {}): ParsedAnswer {
  const scale = options.scale ?? 1000;
  const answer = answerPart(text);
  const referringBlocks = [...answer.matchAll(/```referring[ \t]*\r?\n([\s\S]*?)\r?\n?```/g)];
  let referring = referringBlocks.length > 0 ? referringBlocks.at(-1)![1]!.trim() : null;

  let found: { values: number[]; format: ParseFormat } | null = null;
  const grounding = /```grounding[ \t]*\r?\n?([\s\S]*?)(?:```|$)/.exec(answer);
  if (grounding) {
    for (const re of BLOCK_PATTERNS) {
      const match = re.exec(grounding[1]!);
      if (!match) continue;
      found = { values: numbers(match), format: 'grounding' };
      break;
    }
  }
  if (!found) {
    const match = JSON_POINT.exec(answer);
    if (match) {
      const toolOpen = answer.lastIndexOf('<tool_call>', match.index);
      const inTool = toolOpen >= 0 && !answer.slice(toolOpen, match.index).includes('</tool_call>');
      found = { values: numbers(match), format: inTool ? 'tool_call' : 'json' };
      referring ??= jsonLabel(answer.slice(match.index));
    }
  }
  if (!found) {
    const match = START_BOX.exec(answer);
    if (match) found = { values: numbers(match), format: 'start_box' };
  }
  if (!found) {
    const match = CLICK.exec(answer);
    if (match) {
      found = { values: numbers(match), format: 'click' };
      referring ??= clickContent(answer.slice(match.index));
    }
  }
  if (!found) {
    const match = BRACKET_PAIR.exec(answer);
    if (match) found = { values: numbers(match), format: 'pair' };
  }
  if (!found) return { x: 0, y: 0, referring, ok: false, format: 'none' };
  const [x, y] = centre(found.values);
  const clamp = (v: number) => Math.min(scale, Math.max(0, v));
  return { x: clamp(x), y: clamp(y), referring, ok: true, format: found.format };
}
