// A durable JSONL log: each record one line appended with one write + fsync (durable.ts), a torn last line cut off
// when the log is opened, every other line parsed with a file:line error if it does not.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { appendLineDurable, mkdirDurable, repairTail } from './durable.js';
import { dirname } from 'node:path';

export class JsonlLog<T> {
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(readonly file: string, private readonly records: T[]) {}

  /** Reads the log (creating nothing); `repaired` is the bytes of a torn last line cut off. */
  static async open<T>(file: string): Promise<{ log: JsonlLog<T>; repaired: number }> {
    await mkdirDurable(dirname(file));
    const repaired = await repairTail(file);
    const records: T[] = [];
    if (existsSync(file)) {
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines.forEach((line, i) => {
        if (line.trim() === '') return;
        try {
          records.push(JSON.parse(line) as T);
        } catch (error) {
          throw new Error(`${file}:${i + 1}: invalid JSON (${(error as Error).message})`);
        }
      });
    }
    return { log: new JsonlLog<T>(file, records), repaired };
  }

  /** The records so far (appended ones included), oldest first. */
  all(): readonly T[] {
    return this.records;
  }

  /** Appends one record durably; appends run one after another in call order. */
  append(record: T): Promise<void> {
    const run = this.chain.then(async () => {
      await appendLineDurable(this.file, JSON.stringify(record));
      this.records.push(record);
    });
    this.chain = run.catch(() => {});
    return run;
  }
}
