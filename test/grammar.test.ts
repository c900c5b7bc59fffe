// Constrained decoding grammars (issue 10): every gold answer is accepted along the tokenizer's own encoding of
// it, malformed ones are not, and random walks over the real vocabulary's token masks always end in an answer
// that parseAnswer reads back exactly.
import { beforeAll, describe, expect, it } from 'vitest';
import { formatAnswer, parseAnswer, type AnswerStyle } from '../lib/data/parse.js';
import {
  advanceState, allowedTokens, answerGrammar, compileGrammar, integer, literal, seq, text, tokenBytes, type CompiledGrammar,
} from '../lib/grounding/grammar.js';
import { QwenTokenizer } from '../lib/processor/tokenizer.js';

const tokenizer = QwenTokenizer.bundled();
const VOCAB = 151936; // Qwen3-VL's vocab_size: 267 ids beyond the tokenizer's 151669
const tokens = tokenBytes(tokenizer, VOCAB);
const eos = tokenizer.eosIds;
const STYLES = ['pigg', 'qwen-json', 'point'] as const;
type Style = (typeof STYLES)[number];
const grammars: Record<Style, CompiledGrammar> = { pigg: answerGrammar('pigg'), 'qwen-json': answerGrammar('qwen-json'), point: answerGrammar('point') };

const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const isUtf8 = (bytes: Uint8Array) => {
  try {
    strict.decode(bytes);
    return true;
  } catch {
    return false;
  }
};
const bytesOf = (token: number) => tokens.bytes.subarray(tokens.offsets[token]!, tokens.offsets[token + 1]!);

function run(grammar: CompiledGrammar, bytes: Uint8Array): number {
  let state = grammar.start;
  for (const byte of bytes) if (state >= 0) state = grammar.transitions[state * 256 + byte]!;
  return state;
}
const accepts = (grammar: CompiledGrammar, answer: string | Uint8Array) => {
  const state = run(grammar, typeof answer === 'string' ? Buffer.from(answer, 'utf8') : answer);
  return state >= 0 && grammar.accepting[state] === 1;
};

/** The longest accepted answer in bytes; throws on a cycle. */
function longest(grammar: CompiledGrammar): number {
  const memo = new Map<number, number>();
  const depth = (state: number, path: Set<number>): number => {
    if (path.has(state)) throw new Error('cycle');
    if (memo.has(state)) return memo.get(state)!;
    path.add(state);
    let best = 0;
    for (let byte = 0; byte < 256; byte++) {
      const next = grammar.transitions[state * 256 + byte]!;
      if (next >= 0) best = Math.max(best, 1 + depth(next, path));
    }
    path.delete(state);
    memo.set(state, best);
    return best;
  };
  return depth(grammar.start, new Set());
}

// Token masks of every state, as bitsets (pigg's 2497 states x 151936 tokens).
interface Masks {
  bits: Uint32Array[];
  counts: number[];
}
const popcount = (word: number) => {
  word -= (word >>> 1) & 0x55555555;
  word = (word & 0x33333333) + ((word >>> 2) & 0x33333333);
  return (((word + (word >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
};
function masksOf(grammar: CompiledGrammar): Masks {
  const masks: Masks = { bits: [], counts: [] };
  for (let state = 0; state < grammar.states; state++) {
    const allowed = allowedTokens(grammar, tokens, state, eos);
    const bits = new Uint32Array(Math.ceil(VOCAB / 32));
    let count = 0;
    allowed.forEach((on, token) => on && ((bits[token >>> 5]! |= 1 << (token & 31)), count++));
    masks.bits.push(bits);
    masks.counts.push(count);
  }
  return masks;
}
const allowed = (masks: Masks, state: number, token: number) => (masks.bits[state]![token >>> 5]! >>> (token & 31)) & 1;
/** The index-th allowed token of a state. */
function nth(masks: Masks, state: number, index: number): number {
  const bits = masks.bits[state]!;
  for (let word = 0; ; word++) {
    const count = popcount(bits[word]!);
    if (index < count) {
      for (let bit = 0; ; bit++) if ((bits[word]! >>> bit) & 1 && index-- === 0) return word * 32 + bit;
    }
    index -= count;
  }
}

const masks = {} as Record<Style, Masks>;
beforeAll(() => {
  for (const style of STYLES) masks[style] = masksOf(grammars[style]);
}, 300_000);

describe('tokenBytes', () => {
  it('holds the raw bytes of every regular token; added tokens and ids beyond the tokenizer are special', () => {
    expect(tokens.vocabSize).toBe(VOCAB);
    expect(tokens.offsets.length).toBe(VOCAB + 1);
    expect(tokens.bytes.length).toBe(975969);
    const special = [...tokens.special.keys()].filter((id) => tokens.special[id]);
    expect(special).toEqual([...Array.from({ length: VOCAB - 151643 }, (_, i) => 151643 + i)]);
    expect(special.every((id) => tokens.offsets[id] === tokens.offsets[id + 1])).toBe(true);
    expect(Buffer.from(bytesOf(198)).toString()).toBe('\n');
    expect(Buffer.from(bytesOf(220)).toString()).toBe(' ');
    // Every single byte is a token of its own, so every byte path of a grammar can be written in tokens.
    const singles = new Set<number>();
    for (let id = 0; id < 151643; id++) if (bytesOf(id).length === 1) singles.add(bytesOf(id)[0]!);
    expect(singles.size).toBe(256);
  });

  it('matches the tokenizer: decode of each token whose bytes are UTF-8, and the bytes of encoded text', () => {
    let checked = 0;
    let partial = 0;
    for (let id = 0; id < 151643; id++) {
      const bytes = bytesOf(id);
      if (!isUtf8(bytes)) {
        partial++;
        continue;
      }
      if (Buffer.from(bytes).toString() !== tokenizer.decode([id])) throw new Error(`token ${id} decodes differently`);
      checked++;
    }
    expect([checked, partial]).toEqual([150195, 1448]);
    for (const sentence of ['설정 ⚙️ 열기', '打开设置，然后点击“蓝牙”', 'Ångström café — 🙂👍🏽 naïve', '```grounding\n[999, 1000]\n```', ' \t spaces\n\nand tabs ']) {
      const ids = tokenizer.encode(sentence);
      expect(Buffer.concat(ids.map((id) => bytesOf(id)))).toEqual(Buffer.from(sentence, 'utf8'));
    }
  });

  it('refuses a vocabulary smaller than the tokenizer', () => {
    expect(() => tokenBytes(tokenizer, 151000)).toThrow(/outside the model's vocabulary/);
  });
});

describe('grammar pieces', () => {
  it('integer(max): exactly 0..max without leading zeros', () => {
    for (const max of [0, 7, 10, 99, 345, 1000]) {
      const grammar = compileGrammar('int', integer(max));
      for (let length = 1; length <= 4; length++) {
        for (let n = 0; n < 10 ** length; n++) {
          const digits = String(n).padStart(length, '0');
          const expected = (digits === '0' || !digits.startsWith('0')) && n <= max;
          if (accepts(grammar, digits) !== expected) throw new Error(`integer(${max}) on ${digits}`);
        }
      }
    }
    expect(compileGrammar('int', integer(1000)).states).toBe(7);
  });

  it('text: well-formed UTF-8 only, within its byte bounds, without its forbidden bytes', () => {
    const grammar = compileGrammar('text', text({ minBytes: 1, maxBytes: 4 }));
    const candidates: number[][] = [];
    for (let a = 0; a < 256; a++) {
      candidates.push([a]);
      for (let b = 0; b < 256; b++) {
        candidates.push([a, b]);
        if (a >= 0xe0) for (const c of [0x00, 0x7f, 0x80, 0xbf, 0xc0]) candidates.push([a, b, c]);
        if (a >= 0xf0) for (const c of [0x80, 0xbf]) for (const d of [0x41, 0x80, 0xbf, 0xc0]) candidates.push([a, b, c, d]);
      }
    }
    let accepted = 0;
    for (const candidate of candidates) {
      const bytes = Uint8Array.from(candidate);
      if (accepts(grammar, bytes) !== isUtf8(bytes)) throw new Error(`text on ${Buffer.from(bytes).toString('hex')}`);
      accepted += isUtf8(bytes) ? 1 : 0;
    }
    // 1 byte: ASCII; 2: ASCII pairs and C2-DF + continuation; 3 and 4: the valid sequences among the candidates.
    expect(accepted).toBe(128 + (128 * 128 + 30 * 64) + (32 + 12 * 64 + 32 + 2 * 64) * 2 + (48 + 3 * 64 + 16) * 2 * 2);
    for (const hex of ['c080', 'eda080', 'f4908080', 'f0808080', 'e282', '']) expect(accepts(grammar, Buffer.from(hex, 'hex'))).toBe(false);
    expect(accepts(grammar, 'abcd')).toBe(true);
    expect(accepts(grammar, 'abcde')).toBe(false);
    expect(accepts(grammar, 'a€')).toBe(true); // 1 + 3 bytes
    expect(accepts(grammar, 'ab€')).toBe(false); // 5 bytes: the character does not fit
    const noA = compileGrammar('text', seq(text({ maxBytes: 3, forbidden: [0x41] }), literal('!')));
    expect([accepts(noA, 'xyz!'), accepts(noA, '!'), accepts(noA, 'xAz!')]).toEqual([true, true, false]);
  });
});

describe('answer grammars', () => {
  it('have the expected size; every state is live, the answers are bounded, EOS alone follows their end', () => {
    const shape = STYLES.map((style) => {
      const grammar = grammars[style];
      const accepting = [...grammar.accepting.keys()].filter((state) => grammar.accepting[state]);
      // Live: every state reaches an accepting one (its answers' longest path is finite and the DFA has no cycle).
      const live = new Set(accepting);
      for (let grew = true; grew; ) {
        grew = false;
        for (let state = 0; state < grammar.states; state++) {
          if (live.has(state)) continue;
          for (let byte = 0; byte < 256; byte++) {
            if (live.has(grammar.transitions[state * 256 + byte]!)) {
              live.add(state);
              grew = true;
              break;
            }
          }
        }
      }
      expect(live.size).toBe(grammar.states);
      for (const state of accepting) expect(grammar.transitions.subarray(state * 256, state * 256 + 256).every((next) => next === -1)).toBe(true);
      const total = masks[style].counts.reduce((sum, count) => sum + count, 0);
      return { style, states: grammar.states, accepting: accepting.length, longest: longest(grammar), total };
    });
    console.log(shape);
    expect(shape).toEqual([
      { style: 'pigg', states: 2497, accepting: 1, longest: 143, total: 132632014 },
      { style: 'qwen-json', states: 1436, accepting: 1, longest: 152, total: 101767543 },
      { style: 'point', states: 17, accepting: 1, longest: 12, total: 118 },
    ]);
    expect([answerGrammar('pigg', { maxReferringBytes: 8 }).states, answerGrammar('qwen-json', { maxReferringBytes: 8 }).states]).toEqual([183, 116]);
    expect(() => answerGrammar('pigg', { maxReferringBytes: -1 })).toThrow(/whole number/);
    // 0 leaves the free text out: the shortest answers only.
    const bare = answerGrammar('pigg', { maxReferringBytes: 0 });
    expect(accepts(bare, Buffer.from('```grounding\n[12, 345]\n```'))).toBe(true);
    expect(accepts(bare, Buffer.from('```referring\nx\n```\n```grounding\n[12, 345]\n```'))).toBe(false);
    const bareJson = answerGrammar('qwen-json', { maxReferringBytes: 0 });
    expect(accepts(bareJson, Buffer.from('```json\n[\n\t{"point_2d": [1, 2]}\n]\n```'))).toBe(true);
    expect(accepts(bareJson, Buffer.from('```json\n[\n\t{"point_2d": [1, 2], "label": "x"}\n]\n```'))).toBe(false);
  });

  it('allow EOS exactly in accepting states, and a token exactly where advanceState takes it', () => {
    for (const style of STYLES) {
      const grammar = grammars[style];
      for (let state = 0; state < grammar.states; state++) {
        for (const id of eos) expect(allowed(masks[style], state, id)).toBe(grammar.accepting[state]);
        for (const token of [0, 15, 16, 58, 220, 2109, 73594, 151642, 151644, 151700]) {
          expect(allowed(masks[style], state, token)).toBe(advanceState(grammar, tokens, state, token) >= 0 ? 1 : 0);
        }
      }
      expect(advanceState(grammar, tokens, grammar.start, -1)).toBe(-1);
      expect(advanceState(grammar, tokens, grammar.start, VOCAB)).toBe(-1);
    }
  });

  const POINTS: Array<[number, number]> = [[0, 0], [9, 10], [99, 100], [999, 1000], [1000, 0], [500, 42]];
  const REFERRINGS = [null, 'Settings', '설정 ⚙️', '打开设置，然后点击“蓝牙”', '< Back', 'Wi-Fi 🙂👍🏽', 'x'.repeat(96)];

  it('accept every gold answer along the tokenizer\'s own encoding of it, ending where EOS is allowed', () => {
    const answers: Array<[Style, string]> = [];
    for (const style of ['pigg', 'qwen-json'] as AnswerStyle[]) {
      for (const [x, y] of POINTS) for (const referring of REFERRINGS) answers.push([style, formatAnswer({ x, y }, referring, style)]);
    }
    answers.push(['pigg', formatAnswer({ x: 12, y: 34 }, '"left arrow"', 'pigg')]); // quotes: fine in pigg's referring, escaped in JSON
    answers.push(['pigg', '```referring\n"left arrow"\n```\n```grounding\n(100, 200)\n```']); // PIGG's prompt example
    for (const [x, y] of POINTS) answers.push(['point', `(${x}, ${y})`]);
    for (const [style, answer] of answers) {
      const grammar = grammars[style];
      expect(accepts(grammar, answer), answer).toBe(true);
      let state = grammar.start;
      for (const token of tokenizer.encode(answer)) {
        expect(allowed(masks[style], state, token), `${answer}: token ${token}`).toBe(1);
        state = advanceState(grammar, tokens, state, token);
      }
      expect(eos.map((id) => allowed(masks[style], state, id))).toEqual([1, 1]);
    }
    expect(answers.length).toBe(2 * POINTS.length * REFERRINGS.length + 2 + POINTS.length);
  });

  it('reject malformed answers', () => {
    const pigg = (point: string, referring = '') => `${referring}\`\`\`grounding\n${point}\n\`\`\``;
    const json = (point: string, label = '') => `\`\`\`json\n[\n\t{"point_2d": ${point}${label}}\n]\n\`\`\``;
    const rejected: Array<[Style, string]> = [
      ...['[1001, 5]', '[5, 1001]', '[01, 5]', '[5, 00]', '[-5, 5]', '[1.5, 2]', '[5,5]', '[5, 5)', '(5, 5]', '[5, 5, 5, 5]'].map((p): [Style, string] => ['pigg', pigg(p)]),
      ['pigg', '```grounding\n[5, 5]\n'], ['pigg', '```grounding\n[5, 5]\n``'], ['pigg', '```grounding\n[5, 5]'],
      ['pigg', pigg('[5, 5]', '```referring\nleft\narrow\n```\n')], ['pigg', pigg('[5, 5]', '```referring\n\n```\n')],
      ['pigg', pigg('[5, 5]', '```referring\n left\n```\n')], ['pigg', pigg('[5, 5]', '```referring\nleft\u3000\n```\n')],
      ['pigg', pigg('[5, 5]', '```referring\na`b\n```\n')], ['pigg', pigg('[5, 5]', '```referring\nx</think>\n```\n')],
      ['pigg', pigg('[5, 5]', '```referring\nAssistant: hi\n```\n')], ['pigg', pigg('[5, 5]', '```referring\nassistant\n```\n')],
      ['pigg', pigg('[5, 5]', `\`\`\`referring\n${'x'.repeat(97)}\n\`\`\`\n`)], ['pigg', pigg('[5, 5]', `\`\`\`referring\n${'x'.repeat(94)}€\n\`\`\`\n`)],
      ['pigg', `${pigg('[5, 5]')}\n`],
      ...['[1001, 5]', '[01, 5]', '[-5, 5]', '[1.5, 2]', '(5, 5)'].map((p): [Style, string] => ['qwen-json', json(p)]),
      ['qwen-json', json('[5, 5]', ', "label": "a\\"b"')], ['qwen-json', json('[5, 5]', ', "label": "a\\\\b"')],
      ['qwen-json', json('[5, 5]', ', "label": ""')], ['qwen-json', json('[5, 5]', ', "label": "a\tb"')],
      ['qwen-json', json('[5, 5]', ', "label": "```grounding [1, 2]"')], ['qwen-json', json('[5, 5]', ', "label": "</think>"')],
      ['qwen-json', '```json\n[\n\t{"point_2d": [5, 5]}\n]\n'], ['qwen-json', '```json\n[{"point_2d": [5, 5]}]\n```'],
      ...['(1001, 5)', '(01, 5)', '(-5, 5)', '(1.5, 2)', '(5, 5', '[5, 5]', '(5,5)', ' (5, 5)', '(5, 5)\n'].map((p): [Style, string] => ['point', p]),
    ];
    for (const [style, answer] of rejected) expect(accepts(grammars[style], answer), `${style}: ${JSON.stringify(answer)}`).toBe(false);
    expect(accepts(grammars.pigg, pigg('[5, 5]', `\`\`\`referring\n${'x'.repeat(93)}€\n\`\`\`\n`))).toBe(true);
    expect(accepts(grammars.pigg, pigg('[5, 5]', '```referring\nmy assistant: hi\n```\n'))).toBe(true);
  });

  // mulberry32
  const random = (seed: number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const SHAPES: Record<Style, RegExp> = {
    pigg: /^(?:```referring\n([^\n`]+)\n```\n)?```grounding\n[[(](\d+), (\d+)[\])]\n```$/,
    'qwen-json': /^```json\n\[\n\t\{"point_2d": \[(\d+), (\d+)\](?:, "label": "([^"\\`\x00-\x1f\x7f]+)")?\}\n\]\n```$/,
    point: /^\((\d+), (\d+)\)$/,
  };

  it.each(STYLES)('%s: 250 random walks over the token masks all end in an answer parseAnswer reads back', (style) => {
    const grammar = grammars[style];
    const bound = longest(grammar) + 1; // every token but EOS takes at least one byte
    const next = random(10 + STYLES.indexOf(style));
    let withReferring = 0;
    let steps = 0;
    for (let walk = 0; walk < 250; walk++) {
      let state = grammar.start;
      const bytes: number[] = [];
      for (let step = 0; ; step++) {
        if (step >= bound) throw new Error(`walk ${walk} did not end within ${bound} tokens`);
        const token = nth(masks[style], state, Math.floor(next() * masks[style].counts[state]!));
        if (eos.includes(token)) break;
        state = advanceState(grammar, tokens, state, token);
        if (state < 0) throw new Error(`walk ${walk}: token ${token} is in the mask but not accepted`);
        bytes.push(...bytesOf(token));
        steps++;
      }
      expect(isUtf8(Uint8Array.from(bytes))).toBe(true);
      const answer = Buffer.from(bytes).toString();
      const shape = SHAPES[style].exec(answer);
      if (!shape) throw new Error(`walk ${walk}: ${JSON.stringify(answer)}`);
      const [x, y, referring] = style === 'pigg' ? [shape[2], shape[3], shape[1]] : [shape[1], shape[2], shape[3]];
      const parsed = parseAnswer(answer);
      const expected = { x: Number(x), y: Number(y), referring: referring ?? null, ok: true, format: style === 'point' ? 'pair' : style === 'pigg' ? 'grounding' : 'json' };
      if (JSON.stringify(parsed) !== JSON.stringify(expected)) throw new Error(`walk ${walk}: ${JSON.stringify(answer)} parsed as ${JSON.stringify(parsed)}`);
      expect(Number.isInteger(parsed.x) && parsed.x >= 0 && parsed.x <= 1000 && Number.isInteger(parsed.y) && parsed.y <= 1000).toBe(true);
      if (referring !== undefined) withReferring++;
    }
    console.log(style, { withReferring, steps });
    expect(withReferring).toBe({ pigg: 123, 'qwen-json': 68, point: 0 }[style]);
  });
});
