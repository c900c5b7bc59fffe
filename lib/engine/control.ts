// AbortSignal → native call control: the engine checks its control between layers, decode steps and tensors,
// so an abort returns within one of them and the model stays usable. The call then rejects with the signal's
// reason (an AbortError DOMException unless the caller gave another), as fetch does.
import { native, type NativeControl } from './native.js';

export async function withSignal<T>(signal: AbortSignal | undefined, call: (control: NativeControl | undefined) => Promise<T>): Promise<T> {
  if (!signal) return call(undefined);
  signal.throwIfAborted();
  const control = native().createControl();
  const cancel = () => control.cancel();
  signal.addEventListener('abort', cancel, { once: true });
  try {
    return await call(control);
  } catch (error) {
    if (signal.aborted && (error as Error).name === 'AbortError') throw signal.reason;
    throw error;
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** One control per row signal (undefined rows get none), aborted with it; `release` removes the listeners. */
export function rowControls(signals: ReadonlyArray<AbortSignal | undefined>): { controls: Array<NativeControl | null>; release: () => void } {
  const releases: Array<() => void> = [];
  const controls = signals.map((signal) => {
    if (!signal) return null;
    const control = native().createControl();
    if (signal.aborted) {
      control.cancel();
      return control;
    }
    const cancel = () => control.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    releases.push(() => signal.removeEventListener('abort', cancel));
    return control;
  });
  return { controls, release: () => releases.forEach((release) => release()) };
}
