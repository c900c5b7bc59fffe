// Streaming a row's answer: the tokens generate reports at each step, decoded as they come and sent as text deltas
// (held back at an incomplete UTF-8 character), whose concatenation is the final answer's text.
import type { QwenTokenizer } from '../processor/tokenizer.js';

/** One row's streamed text: tokens from generate's onStep, decoded as they come. */
export class TextStream {
  private readonly ids: number[] = [];
  private sent = '';
  private done = false;

  constructor(private readonly tokenizer: QwenTokenizer, private readonly eosIds: ReadonlySet<number>, private readonly limit: number,
    private readonly emit: (delta: string) => void) {}

  push(token: number): void {
    if (this.done) return;
    this.ids.push(token);
    if (this.eosIds.has(token) || this.ids.length >= this.limit) this.done = true;
    const text = this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
    if (!text.endsWith('\uFFFD')) this.send(text);
  }

  /** The final answer: what was not streamed yet; later steps are ignored. */
  finish(text: string): void {
    this.done = true;
    this.send(text);
  }

  /** Aborted or failed: nothing more is streamed. */
  close(): void {
    this.done = true;
  }

  private send(text: string): void {
    if (text.length <= this.sent.length || !text.startsWith(this.sent)) return;
    const delta = text.slice(this.sent.length);
    this.sent = text;
    try {
      this.emit(delta);
    } catch (error) {
      process.emitWarning(`Grounder onText threw: ${(error as Error).message}`);
    }
  }
}
