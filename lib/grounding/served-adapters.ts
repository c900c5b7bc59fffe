// The adapters a Grounder serves, over the engine's registry. A batch pins the adapters its rows use; one removed
// while pinned is gone for new requests at once, and the engine lets go of it when its last batch ends.
import type { AdapterInfo, Qwen3VL } from '../engine/model.js';

export class ServedAdapters {
  /** Adapters a running batch uses (name -> batches): removing one waits for them, so the batch never loses it. */
  private readonly pins = new Map<string, number>();
  /** Adapters removed while pinned: gone for new requests, unregistered from the engine when their last batch ends. */
  private readonly removing = new Set<string>();
  /** The Grounder was disposed: the engine is left alone. */
  private closed = false;

  constructor(private readonly model: Qwen3VL) {}

  /** Registers a PEFT LoRA adapter folder under `name` (replacing a same-named one). */
  async add(name: string, path: string): Promise<AdapterInfo> {
    const info = await this.model.registerAdapter(name, path);
    this.removing.delete(name); // re-added while a batch still held the old one: it stays
    return info;
  }

  /** Unregisters an adapter now, or when the batches that use it end; false when none had that name. */
  remove(name: string): boolean {
    if (this.removing.has(name)) return false;
    if (!this.pins.has(name)) return this.model.unregisterAdapter(name);
    const known = this.model.adapters().some((a) => a.name === name);
    if (known) this.removing.add(name);
    return known;
  }

  /** The adapters new requests may use. */
  list(): AdapterInfo[] {
    return this.model.adapters().filter((a) => !this.removing.has(a.name));
  }

  names(): Set<string> {
    return new Set(this.list().map((a) => a.name));
  }

  /** A batch starts with these adapters. */
  pin(names: readonly string[]): void {
    for (const name of names) this.pins.set(name, (this.pins.get(name) ?? 0) + 1);
  }

  /** Lets go of a batch's adapters; one removed meanwhile leaves the engine with its last batch. */
  unpin(names: readonly string[]): void {
    for (const name of names) {
      const left = this.pins.get(name)! - 1;
      if (left > 0) {
        this.pins.set(name, left);
        continue;
      }
      this.pins.delete(name);
      if (this.removing.delete(name) && !this.closed) this.model.unregisterAdapter(name);
    }
  }

  /** The Grounder is disposed: batches ending later leave the engine's adapters alone. */
  close(): void {
    this.closed = true;
  }
}
