// The answer grammars a Grounder decodes under, compiled into its model once per style and token budget: a budget
// smaller than the grammar's longest answer gets a grammar with a shorter referring text, so answers still complete.
import type { Qwen3VL, GrammarHandle, GrammarTables, VocabularyBytes } from '../engine/model.js';
import type { QwenTokenizer } from '../processor/tokenizer.js';
import { grounderError } from './errors.js';
import { answerGrammar, tokenBytes, type ConstrainStyle } from './grammar.js';

type GrammarStyle = Exclude<ConstrainStyle, 'none'>;
/** answerGrammar's default bound on the referring text / label. */
const REFERRING_BYTES = 96;
/** Shorter bounds (for small token budgets) are rounded down to a multiple of this, so few grammars are compiled. */
const REFERRING_STEP = 8;

/** The most bytes an answer of a grammar can have; Infinity when it has a loop. */
export function longestAnswerBytes(grammar: GrammarTables): number {
  const memo = new Int32Array(grammar.states).fill(-2); // -2 unseen, -3 on the path
  const longest = (state: number): number => {
    const seen = memo[state]!;
    if (seen === -3) return Number.POSITIVE_INFINITY;
    if (seen !== -2) return seen;
    memo[state] = -3;
    let best = grammar.accepting[state] ? 0 : Number.NEGATIVE_INFINITY;
    for (let byte = 0; byte < 256; byte++) {
      const next = grammar.transitions[state * 256 + byte]!;
      if (next >= 0) best = Math.max(best, 1 + longest(next));
    }
    if (!Number.isFinite(best)) return best;
    memo[state] = best;
    return best;
  };
  return longest(grammar.start);
}

/**
 * One answer grammar compiled into one model, per token budget: every allowed token holds at least one byte, so an
 * answer of at most B bytes ends (with its end token) within B + 1 tokens. Where the budget is smaller than the full
 * grammar's longest answer, the referring text is bounded tighter, so the answer still completes and parses.
 */
export class AnswerGrammars {
  private readonly handles = new Map<number, { handle: GrammarHandle; longest: number }>();
  /** The budget the smallest grammar needs. */
  readonly minBudget: number;

  constructor(private readonly model: Qwen3VL, private readonly vocabulary: VocabularyBytes,
    private readonly eosIds: readonly number[], readonly style: GrammarStyle) {
    this.minBudget = this.compiled(0).longest + 1;
  }

  /** The grammar for rows of this token budget (one handle per referring bound, cached). */
  forBudget(budget: number): GrammarHandle {
    const full = this.compiled(REFERRING_BYTES);
    if (full.longest + 1 <= budget) return full.handle;
    if (budget < this.minBudget) {
      throw grounderError('INVALID_ARGUMENT',
        `maxNewTokens ${budget} cannot hold a complete '${this.style}' answer (up to ${this.minBudget - 1} bytes and the end token): use at least ${this.minBudget}, or constrain 'none'`);
    }
    // The referring bound that fits: the bytes an answer has beyond its referring, then what is left of the budget
    // (0: no referring at all).
    const overhead = this.compiled(1).longest - 1;
    let bound = Math.max(0, Math.floor((budget - 1 - overhead) / REFERRING_STEP) * REFERRING_STEP);
    while (bound > 0 && this.compiled(bound).longest + 1 > budget) bound = Math.max(0, bound - REFERRING_STEP);
    return this.compiled(bound).handle;
  }

  private compiled(maxReferringBytes: number): { handle: GrammarHandle; longest: number } {
    let entry = this.handles.get(maxReferringBytes);
    if (!entry) {
      const tables = answerGrammar(this.style, { maxReferringBytes });
      const longest = longestAnswerBytes(tables);
      if (!Number.isFinite(longest)) throw new Error(`the '${this.style}' answer grammar has no longest answer (it loops)`);
      entry = { handle: this.model.createGrammar(tables, this.vocabulary, this.eosIds), longest };
      this.handles.set(maxReferringBytes, entry);
    }
    return entry;
  }
}

/** Every token's bytes, once per tokenizer and vocabulary size (150k tokens: worth keeping). */
const vocabularies = new WeakMap<QwenTokenizer, Map<number, VocabularyBytes>>();
/** Compiled grammars, once per model and style. */
const grammarsByModel = new WeakMap<Qwen3VL, Map<GrammarStyle, AnswerGrammars>>();

/** A model's grammars of a style: compiled on first use, then shared by every Grounder on that model. */
export function answerGrammars(model: Qwen3VL, tokenizer: QwenTokenizer, style: GrammarStyle, vocabSize: number, eosIds: readonly number[]): AnswerGrammars {
  const cached = grammarsByModel.get(model)?.get(style);
  if (cached) return cached;
  let byVocab = vocabularies.get(tokenizer);
  if (!byVocab) vocabularies.set(tokenizer, (byVocab = new Map()));
  let vocabulary = byVocab.get(vocabSize);
  if (!vocabulary) byVocab.set(vocabSize, (vocabulary = tokenBytes(tokenizer, vocabSize)));
  const grammars = new AnswerGrammars(model, vocabulary, eosIds, style);
  let byStyle = grammarsByModel.get(model);
  if (!byStyle) grammarsByModel.set(model, (byStyle = new Map()));
  byStyle.set(style, grammars);
  return grammars;
}
