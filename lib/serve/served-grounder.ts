// What the server needs of a Grounder (lib/grounding/grounder.ts): what its routes call, and the model's device for
// the device-memory gauge.
import type { Grounder } from '../grounding/grounder.js';

export type ServedGrounder = Pick<Grounder, 'ground' | 'addAdapter' | 'removeAdapter' | 'adapters' | 'modelName' | 'pending' | 'maxNewTokens'> & {
  readonly model?: { info(): Promise<{ device: string }> };
};
