// Answer grammars for constrained greedy decoding. A grammar is built from small pieces (literals, alternation,
// integers, bounded UTF-8 text) as an NFA over bytes, made deterministic by subset construction, then trimmed so
// that every state can still reach the end of an answer, and minimized. With every token's bytes
// (token-bytes.ts), a DFA state allows exactly the tokens whose bytes it accepts, and EOS exactly where the
// answer is complete: a constrained answer always finishes and always parses (lib/data/parse.ts parseAnswer).
// The engine builds the same token masks natively; allowedTokens / advanceState are the reference for it.
import type { TokenBytes } from './token-bytes.js';

export { tokenBytes, type TokenBytes } from './token-bytes.js';

export type ConstrainStyle = 'pigg' | 'qwen-json' | 'point' | 'none';

export interface CompiledGrammar {
  name: string;
  states: number;
  start: number;
  /** [states * 256]: next state for (state, byte), -1 = byte not allowed. */
  transitions: Int32Array;
  /** [states]: 1 = the answer is complete here, EOS allowed. */
  accepting: Uint8Array;
}

// ---------------------------------------------------------------------------------------------------------
// Pieces: each adds its part of an NFA (byte edges and epsilon edges between numbered nodes).

export class Nfa {
  readonly edges: Array<Array<[byte: number, to: number]>> = [];
  readonly epsilons: number[][] = [];

  node(): number {
    this.edges.push([]);
    this.epsilons.push([]);
    return this.edges.length - 1;
  }

  edge(from: number, byte: number, to: number): void {
    this.edges[from]!.push([byte, to]);
  }

  epsilon(from: number, to: number): void {
    this.epsilons[from]!.push(to);
  }
}

/** Adds a piece of grammar to `nfa` starting at node `from`; returns the node where it ends. */
export type Piece = (nfa: Nfa, from: number) => number;

/** The UTF-8 bytes of `text`; ignoreCase: ASCII letters match either case. */
export function literal(text: string, options: { ignoreCase?: boolean } = {}): Piece {
  const bytes = Buffer.from(text, 'utf8');
  return (nfa, from) => {
    let node = from;
    for (const byte of bytes) {
      const next = nfa.node();
      const char = String.fromCharCode(byte);
      const variants = options.ignoreCase && byte < 0x80 ? new Set([char.toLowerCase(), char.toUpperCase()]) : [char];
      for (const variant of variants) nfa.edge(node, variant.charCodeAt(0), next);
      node = next;
    }
    return node;
  };
}

export function seq(...pieces: Piece[]): Piece {
  return (nfa, from) => pieces.reduce((node, piece) => piece(nfa, node), from);
}

export function alt(...pieces: Piece[]): Piece {
  return (nfa, from) => {
    const end = nfa.node();
    for (const piece of pieces) {
      const start = nfa.node();
      nfa.epsilon(from, start);
      nfa.epsilon(piece(nfa, start), end);
    }
    return end;
  };
}

export function optional(piece: Piece): Piece {
  return alt(piece, seq());
}

/** Zero or more repetitions. */
export function star(piece: Piece): Piece {
  return (nfa, from) => {
    const loop = nfa.node();
    nfa.epsilon(from, loop);
    nfa.epsilon(piece(nfa, loop), loop);
    return loop;
  };
}

/** A decimal integer 0..max without leading zeros. */
export function integer(max: number): Piece {
  const limit = Array.from(String(max), Number);
  return (nfa, from) => {
    const end = nfa.node();
    const digits = (node: number, lo: number, hi: number): number => {
      const next = nfa.node();
      for (let digit = lo; digit <= hi; digit++) nfa.edge(node, 0x30 + digit, next);
      return next;
    };
    const free = (node: number, count: number): number => (count === 0 ? node : free(digits(node, 0, 9), count - 1));
    nfa.epsilon(digits(from, 0, 0), end);
    // Fewer digits than max: any of them.
    for (let length = 1; length < limit.length; length++) nfa.epsilon(free(digits(from, 1, 9), length - 1), end);
    // As many as max: its leading digits, then a smaller one and any rest (or all of max's digits).
    let node = from;
    limit.forEach((digit, i) => {
      const lowest = i === 0 ? 1 : 0;
      if (digit > lowest) nfa.epsilon(free(digits(node, lowest, digit - 1), limit.length - 1 - i), end);
      node = digits(node, digit, digit);
    });
    nfa.epsilon(node, end);
    return end;
  };
}

const CONTINUATION: [number, number] = [0x80, 0xbf];
/** Well-formed UTF-8 (Unicode Table 3-7): the byte ranges of each kind of character, lead byte first. */
const UTF8_CHARACTERS: ReadonlyArray<ReadonlyArray<[number, number]>> = [
  [[0x00, 0x7f]],
  [[0xc2, 0xdf], CONTINUATION],
  [[0xe0, 0xe0], [0xa0, 0xbf], CONTINUATION],
  [[0xe1, 0xec], CONTINUATION, CONTINUATION],
  [[0xed, 0xed], [0x80, 0x9f], CONTINUATION],
  [[0xee, 0xef], CONTINUATION, CONTINUATION],
  [[0xf0, 0xf0], [0x90, 0xbf], CONTINUATION, CONTINUATION],
  [[0xf1, 0xf3], CONTINUATION, CONTINUATION, CONTINUATION],
  [[0xf4, 0xf4], [0x80, 0x8f], CONTINUATION, CONTINUATION],
];

export interface TextOptions {
  minBytes?: number;
  maxBytes: number;
  /** Bytes that may not occur (anywhere in a character). */
  forbidden?: readonly number[];
}

/**
 * Free text of minBytes..maxBytes bytes that is always well-formed UTF-8: characters are never cut, so the
 * text only ends on a character boundary. Node at[p] is the boundary after p bytes; a character of n bytes
 * leads from it through the shared "n - k continuation bytes to go, landing at p + n" nodes to at[p + n].
 */
export function text(options: TextOptions): Piece {
  const { minBytes = 0, maxBytes } = options;
  const forbidden = new Set(options.forbidden ?? []);
  return (nfa, from) => {
    const end = nfa.node();
    const at = [from, ...Array.from({ length: maxBytes }, () => nfa.node())];
    const pending = new Map<string, number>(); // `${continuation bytes to go} ${landing boundary}` -> node
    const toGo = (count: number, landing: number): number => {
      if (count === 0) return at[landing]!;
      const key = `${count} ${landing}`;
      let node = pending.get(key);
      if (node === undefined) {
        pending.set(key, (node = nfa.node()));
        const next = toGo(count - 1, landing);
        for (let byte = CONTINUATION[0]; byte <= CONTINUATION[1]; byte++) if (!forbidden.has(byte)) nfa.edge(node, byte, next);
      }
      return node;
    };
    const edges = (from: number, [lo, hi]: [number, number], to: number) => {
      for (let byte = lo; byte <= hi; byte++) if (!forbidden.has(byte)) nfa.edge(from, byte, to);
    };
    for (let p = 0; p <= maxBytes; p++) {
      if (p >= minBytes) nfa.epsilon(at[p]!, end);
      for (const [lead, second, ...rest] of UTF8_CHARACTERS) {
        const landing = p + 1 + (second ? 1 : 0) + rest.length;
        if (landing > maxBytes) continue;
        if (!second) edges(at[p]!, lead!, at[landing]!);
        else if (second === CONTINUATION) edges(at[p]!, lead!, toGo(1 + rest.length, landing));
        else {
          const node = nfa.node(); // a lead byte that narrows the second byte's range
          edges(at[p]!, lead!, node);
          edges(node, second, toGo(rest.length, landing));
        }
      }
    }
    return end;
  };
}

// ---------------------------------------------------------------------------------------------------------
// Compilation: subset construction, run on the grammar's NFA and, beside it, on a search for the excluded
// patterns (any bytes, then one of them): a step that completes an excluded pattern is not allowed.

/** Subset construction on demand: state i is the epsilon closure sets[i] of NFA nodes; row(i) its 256 successors. */
class Subsets {
  readonly sets: number[][] = [];
  private readonly ids = new Map<string, number>();
  private readonly rows: Int32Array[] = [];
  private readonly closures = new Map<string, number>(); // the nodes a byte leads to -> their closure's state

  constructor(private readonly nfa: Nfa, start: number) {
    this.intern([start]);
  }

  /** The successor of `state` for each byte; -1 where no edge takes the byte. */
  row(state: number): Int32Array {
    let row = this.rows[state];
    if (!row) {
      const targets = Array.from({ length: 256 }, (): number[] => []);
      for (const node of this.sets[state]!) for (const [byte, to] of this.nfa.edges[node]!) targets[byte]!.push(to);
      this.rows[state] = row = Int32Array.from(targets, (nodes) => (nodes.length > 0 ? this.intern(nodes) : -1));
    }
    return row;
  }

  private intern(nodes: readonly number[]): number {
    const moved = nodes.join(',');
    const known = this.closures.get(moved);
    if (known !== undefined) return known;
    const seen = new Set<number>();
    const stack = [...nodes];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (!seen.has(node)) seen.add(node), stack.push(...this.nfa.epsilons[node]!);
    }
    const set = [...seen].sort((a, b) => a - b);
    const key = set.join(',');
    let id = this.ids.get(key);
    if (id === undefined) this.ids.set(key, (id = this.sets.push(set) - 1));
    this.closures.set(moved, id);
    return id;
  }
}

/** Compiles `piece` to a DFA over bytes whose states are all live; no accepted answer contains an `excluding` match. */
export function compileGrammar(name: string, piece: Piece, excluding?: Piece): CompiledGrammar {
  const grammarNfa = new Nfa();
  const grammarEnd = piece(grammarNfa, grammarNfa.node());
  const searchNfa = new Nfa();
  const searchStart = searchNfa.node();
  for (let byte = 0; byte < 256; byte++) searchNfa.edge(searchStart, byte, searchStart);
  const found = excluding ? excluding(searchNfa, searchStart) : -1;
  const grammar = new Subsets(grammarNfa, 0);
  const search = new Subsets(searchNfa, searchStart);

  // The DFA's states are pairs (grammar subset, search subset).
  const pairs: Array<[grammar: number, search: number]> = [];
  const ids = new Map<string, number>();
  const intern = (g: number, s: number): number => {
    const key = `${g} ${s}`;
    let id = ids.get(key);
    if (id === undefined) ids.set(key, (id = pairs.push([g, s]) - 1));
    return id;
  };
  intern(0, 0);
  const completes: boolean[] = []; // per search state: an excluded pattern has just been matched
  const next: number[] = [];
  for (let state = 0; state < pairs.length; state++) {
    const [g, s] = pairs[state]!;
    const grammarRow = grammar.row(g);
    const searchRow = search.row(s);
    for (let byte = 0; byte < 256; byte++) {
      const searched = searchRow[byte]!;
      const stepped = grammarRow[byte]! >= 0 && !(completes[searched] ??= search.sets[searched]!.includes(found));
      next[state * 256 + byte] = stepped ? intern(grammarRow[byte]!, searched) : -1;
    }
  }
  const accepts = pairs.map(([g]) => grammar.sets[g]!.includes(grammarEnd));

  // Trim and minimize in one pass, each state after the states it leads to (answers are bounded, so the DFA is
  // acyclic): a state that reaches no accepting state is dropped, and states alike in accepting and in where
  // each byte leads become one.
  const merged = new Int32Array(pairs.length).fill(-2); // -2: not seen yet, -1: dropped, else the merged state
  const visiting = new Uint8Array(pairs.length);
  const keys = new Map<string, number>();
  const rows: Int32Array[] = [];
  const finals: boolean[] = [];
  const visit = (state: number): number => {
    if (merged[state] !== -2) return merged[state]!;
    if (visiting[state]) throw new Error(`grammar ${name} has a cycle: its answers must be bounded`);
    visiting[state] = 1;
    const row = new Int32Array(256);
    for (let byte = 0; byte < 256; byte++) row[byte] = next[state * 256 + byte]! >= 0 ? visit(next[state * 256 + byte]!) : -1;
    let id = -1;
    if (accepts[state] || row.some((to) => to >= 0)) {
      const key = `${accepts[state] ? 1 : 0}${row.join(',')}`;
      id = keys.get(key) ?? -1;
      if (id < 0) keys.set(key, (id = rows.push(row) - 1)), finals.push(accepts[state]!);
    }
    return (merged[state] = id);
  };
  const start = visit(0);
  if (start < 0) throw new Error(`grammar ${name} accepts nothing`);

  // Numbered breadth-first from the start.
  const order = [start];
  const renumbered = new Map([[start, 0]]);
  for (let i = 0; i < order.length; i++) {
    for (const to of rows[order[i]!]!) if (to >= 0 && !renumbered.has(to)) renumbered.set(to, order.push(to) - 1);
  }
  const transitions = new Int32Array(order.length * 256);
  const accepting = new Uint8Array(order.length);
  order.forEach((old, state) => {
    accepting[state] = finals[old] ? 1 : 0;
    rows[old]!.forEach((to, byte) => (transitions[state * 256 + byte] = to < 0 ? -1 : renumbered.get(to)!));
  });
  return { name, states: order.length, start: 0, transitions, accepting };
}

// ---------------------------------------------------------------------------------------------------------
// The answer grammars (lib/data/parse.ts formatAnswer's forms).

const CONTROL_BYTES = [...Array.from({ length: 0x20 }, (_, byte) => byte), 0x7f];
const ascii = (chars: string) => Array.from(chars, (char) => char.charCodeAt(0));

function point(open: string, close: string): Piece {
  return seq(literal(open), integer(1000), literal(', '), integer(1000), literal(close));
}

/** The characters String.prototype.trim removes (all in the BMP). */
const TRIMMED = Array.from({ length: 0x10000 }, (_, code) => String.fromCharCode(code)).filter(
  (char) => !/[\ud800-\udfff]/.test(char) && char.trim() === '',
);

// parseAnswer reads only what follows the last chat-template assistant marker and the last "</think>", so no
// answer may contain either (the marker's end-of-text form cannot occur: every answer ends in "```" or ")").
const SPACES = star(alt(literal(' '), literal('\t')));
const MARKER = seq(literal('\n'), SPACES, optional(literal('<|im_start|>', { ignoreCase: true })), literal('assistant', { ignoreCase: true }),
  SPACES, alt(literal(':'), seq(optional(literal('\r')), literal('\n'))));
const UNREAD = [MARKER, literal('</think>')];

/** `maxReferringBytes` bounds the referring (pigg) or label (qwen-json) text; 0 leaves it out (the shortest answers). */
export function answerGrammar(style: Exclude<ConstrainStyle, 'none'>, options: { maxReferringBytes?: number } = {}): CompiledGrammar {
  const maxBytes = options.maxReferringBytes ?? 96;
  if (!Number.isInteger(maxBytes) || maxBytes < 0) throw new Error(`maxReferringBytes must be a whole number, got ${maxBytes}`);
  // A piece of the answer that holds free text, or nothing when the text is left out.
  const withText = (piece: () => Piece) => (maxBytes === 0 ? seq() : optional(piece()));
  if (style === 'pigg') {
    // ```referring TEXT ``` (optional) then ```grounding [x, y] ``` (formatAnswer) or (x, y) (PIGG's prompt example).
    // parseAnswer trims the referring: the text between the "\n"s around it neither starts nor ends with whitespace.
    const referring = () => seq(literal('```referring\n'), text({ minBytes: 1, maxBytes, forbidden: [...CONTROL_BYTES, ...ascii('`')] }), literal('\n```\n'));
    const edge = alt(...TRIMMED.map((char) => literal(char)));
    return compileGrammar(
      style,
      seq(withText(referring), literal('```grounding\n'), alt(point('[', ']'), point('(', ')')), literal('\n```')),
      alt(...UNREAD, seq(literal('\n'), edge), seq(edge, literal('\n'))),
    );
  }
  if (style === 'qwen-json') {
    // The label is a JSON string without escapes; no backtick either, which could open a ```grounding block.
    const label = () => seq(literal(', "label": "'), text({ minBytes: 1, maxBytes, forbidden: [...CONTROL_BYTES, ...ascii('"\\`')] }), literal('"'));
    return compileGrammar(
      style,
      seq(literal('```json\n[\n\t{"point_2d": ['), integer(1000), literal(', '), integer(1000), literal(']'), withText(label), literal('}\n]\n```')),
      alt(...UNREAD),
    );
  }
  if (style === 'point') return compileGrammar(style, point('(', ')'), alt(...UNREAD));
  throw new Error(`unknown answer grammar '${String(style)}'`);
}

// ---------------------------------------------------------------------------------------------------------
// Token masks (reference implementation; the engine builds the same natively, cached per state).

function walk(grammar: CompiledGrammar, tokens: TokenBytes, state: number, token: number): number {
  const begin = tokens.offsets[token]!;
  const end = tokens.offsets[token + 1]!;
  if (tokens.special[token] || begin === end) return -1;
  for (let i = begin; i < end && state >= 0; i++) state = grammar.transitions[state * 256 + tokens.bytes[i]!]!;
  return state;
}

/** [vocabSize]: 1 = `token` may follow in `state`: its bytes are accepted there, or it is an EOS id and `state` accepts. */
export function allowedTokens(grammar: CompiledGrammar, tokens: TokenBytes, state: number, eosIds: readonly number[]): Uint8Array {
  const allowed = new Uint8Array(tokens.vocabSize);
  for (let token = 0; token < tokens.vocabSize; token++) allowed[token] = walk(grammar, tokens, state, token) >= 0 ? 1 : 0;
  for (const id of eosIds) allowed[id] = grammar.accepting[state]!;
  return allowed;
}

/** The DFA state after `token`'s bytes from `state`; -1 = not allowed (special tokens, EOS included: EOS ends the answer). */
export function advanceState(grammar: CompiledGrammar, tokens: TokenBytes, state: number, token: number): number {
  return token >= 0 && token < tokens.vocabSize ? walk(grammar, tokens, state, token) : -1;
}
