// The Grounder's errors: an Error with a code a server maps to its HTTP status.
export type GrounderErrorCode = 'UNKNOWN_ADAPTER' | 'INVALID_IMAGE' | 'INVALID_ARGUMENT' | 'GROUNDER_DISPOSED';

export type GrounderError = Error & { code: GrounderErrorCode };

export function grounderError(code: GrounderErrorCode, message: string, cause?: unknown): GrounderError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}
