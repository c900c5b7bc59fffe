// Answer formats: PIGG's prompt and fenced ```referring``` / ```grounding``` answer, Qwen3-VL's point_2d JSON,
// and a parser for model output. parsePiggInference is PIGG's parse_inference (src/utils/eval.py) exactly;
// parseAnswer is the robust parser (datasets.md §3) used by our evaluation.
import { roundHalfEven } from './metrics.js';
import type { Point } from './types.js';

export type AnswerStyle = 'pigg' | 'qwen-json';
export const ANSWER_STYLES: readonly AnswerStyle[] = ['pigg', 'qwen-json'];

export type ParseFormat = 'grounding' | 'json' | 'tool_call' | 'start_box' | 'click' | 'pair' | 'none';

export interface ParsedAnswer {
  /** Grid coordinates, clamped to [0, scale] by parseAnswer (not by PIGG's parser); (0, 0) when ok is false, as PIGG scores a failure. */
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
// PIGG's parse_inference (src/utils/eval.py), kept exact for comparisons with PIGG's numbers: ints only, no range
// check, a box yields its first corner, a "-" or "." splits numbers, anything unparsed yields (0, 0) and the
// referring "None". test/fixtures/pigg-parse holds CPython's outputs (scripts/pigg-parse-fixture.py).
// Python's \d is any Unicode decimal digit and its \s Python's str whitespace, which is not JS's \s (Python's
// has U+001C-U+001F and U+0085, JS's has U+FEFF).

const PY_SPACE = String.raw`[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]`;
const PY_PATTERNS: readonly RegExp[] = [
  String.raw`\(?(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\)?`,
  String.raw`\(?(\d+)\s*,\s*(\d+)\)?\s*to\s*\(?(\d+)\s*,\s*(\d+)\)?`,
  String.raw`(?:Top-left|Bottom-right)[^:]*:\s*\(?(\d+)\s*,\s*(\d+)\)?`,
  String.raw`\[?(\d+)\s*,\s*(\d+)\]?`,
  String.raw`\(?(\d+)\s*,\s*(\d+)\)?`,
].map((pattern) => new RegExp(pattern.replaceAll(String.raw`\d`, String.raw`\p{Nd}`).replaceAll(String.raw`\s`, PY_SPACE), 'u'));

/** Python's int() of a run of Unicode decimal digits: each digit's value is its offset in its block of ten. */
function pythonInt(digits: string): number {
  let value = 0;
  for (const char of digits) {
    let zero = char.codePointAt(0)!;
    // Unicode keeps every decimal digit in a contiguous run of ten from 0 to 9, so walking back to the run's
    // start counts the digit's value (runs of several scripts may be adjacent: mod 10).
    let offset = 0;
    while (/\p{Nd}/u.test(String.fromCodePoint(zero - 1))) zero--, offset++;
    value = value * 10 + (offset % 10);
  }
  return value;
}

export interface PiggParse {
  /** The last ```referring block, or "None". */
  content: string;
  x: number;
  y: number;
  /** Whether a referring block was found (content is then that text, even a literal "None"). */
  hasReferring: boolean;
  /** Whether a coordinate pattern matched (PIGG itself cannot tell a failure from an answer (0, 0)). */
  matched: boolean;
}

/** PIGG's parse_inference with what it cannot tell apart made explicit (parsePiggInference is its exact return). */
export function parsePigg(text: string, isGt = true): PiggParse {
  if (!isGt) text = text.split('assistant').at(-1)!;
  const referring = [...text.matchAll(/```referring\n([\s\S]*?)\n```/g)];
  const content = referring.length > 0 ? referring.at(-1)![1]! : 'None';
  const result = { content, x: 0, y: 0, hasReferring: referring.length > 0, matched: false };
  // PIGG splits on "```grounding" only when the text says "grounding" anywhere, and reads the first block after a
  // fence that has a closing fence (even when no pattern matches in it).
  const block = text.includes('grounding') ? text.split('```grounding').slice(1).find((b) => b.includes('```')) : undefined;
  if (block === undefined) return result;
  const body = block.split('```')[0]!;
  for (const pattern of PY_PATTERNS) {
    const match = pattern.exec(body);
    if (!match) continue;
    const nums = match.slice(1).flatMap((g) => (g === undefined ? [] : [pythonInt(g)]));
    if (nums.length >= 2) Object.assign(result, { x: nums[0]!, y: nums[1]!, matched: true });
    break;
  }
  return result;
}

export function parsePiggInference(text: string, isGt = true): { content: string; x: number; y: number } {
  const { content, x, y } = parsePigg(text, isGt);
  return { content, x, y };
}

/** Which parser reads a model's answer: PIGG's parse_inference, as its evaluation scores, or pigg's robust one. */
export type ParserName = 'pigg' | 'robust';
export const PARSERS: readonly ParserName[] = ['pigg', 'robust'];

// PIGG decodes the whole sequence (prompt and answer, special tokens skipped) and parses what follows its last
// "assistant". The chat template's prompt always ends with "<|im_start|>assistant\n", which decodes to
// "assistant\n" on a character boundary, so that prefix before the generated text parses exactly as PIGG's text.
const PIGG_DECODED_TURN = 'assistant\n';

/** A model's generated text (special tokens skipped) read by `parser`, as a grid point. */
export function readAnswer(answer: string, parser: ParserName): ParsedAnswer {
  if (parser === 'robust') return parseAnswer(answer);
  const pigg = parsePigg(PIGG_DECODED_TURN + answer, false);
  return { x: pigg.x, y: pigg.y, referring: pigg.hasReferring ? pigg.content : null, ok: pigg.matched, format: pigg.matched ? 'grounding' : 'none' };
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
