// The one test for "a JSON object" that parsed files and request bodies are checked with: not null, not an array.

export type JsonObject = Record<string, unknown>;

export const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);
