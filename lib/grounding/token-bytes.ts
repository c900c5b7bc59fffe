// The raw bytes of every token id, for constrained decoding (a token is allowed where the answer grammar's DFA
// accepts its bytes). Byte-level BPE stores each byte as one printable character (GPT-2's bytes_to_unicode);
// inverting that map gives the bytes back.
import type { QwenTokenizer } from '../processor/tokenizer.js';

export interface TokenBytes {
  /** The model's vocab_size (config), may exceed the tokenizer's. */
  vocabSize: number;
  /** [vocabSize + 1]: token t's bytes are bytes[offsets[t] .. offsets[t+1]). */
  offsets: Int32Array;
  bytes: Uint8Array;
  /** [vocabSize]: 1 = added/special token or an id the tokenizer lacks: never allowed (EOS ids are handled separately). */
  special: Uint8Array;
}

/** GPT-2's bytes_to_unicode, inverted: printable Latin-1 bytes stand for themselves, the other 68 for U+0100 onwards. */
function unicodeToByte(): Map<number, number> {
  const map = new Map<number, number>();
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
    map.set(printable ? byte : 256 + shifted++, byte);
  }
  return map;
}

export function tokenBytes(tokenizer: QwenTokenizer, vocabSize: number): TokenBytes {
  const { tokens, added } = tokenizer.vocabulary();
  const byId: Array<number[] | undefined> = new Array(vocabSize);
  const toByte = unicodeToByte();
  for (const [token, id] of tokens) {
    if (id >= vocabSize) throw new Error(`token id ${id} is outside the model's vocabulary of ${vocabSize}`);
    byId[id] = Array.from(token, (char) => {
      const byte = toByte.get(char.codePointAt(0)!);
      if (byte === undefined) throw new Error(`token ${id} (${JSON.stringify(token)}) is not byte-level BPE`);
      return byte;
    });
  }
  for (const id of added) if (id < vocabSize) byId[id] = undefined;

  const offsets = new Int32Array(vocabSize + 1);
  const special = new Uint8Array(vocabSize);
  for (let id = 0; id < vocabSize; id++) {
    const bytes = byId[id];
    if (bytes === undefined) special[id] = 1;
    offsets[id + 1] = offsets[id]! + (bytes?.length ?? 0);
  }
  const bytes = new Uint8Array(offsets[vocabSize]!);
  for (let id = 0; id < vocabSize; id++) if (byId[id]) bytes.set(byId[id]!, offsets[id]!);
  return { vocabSize, offsets, bytes, special };
}
