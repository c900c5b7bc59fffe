// Overlapping the making of inputs with their use: the runners' batches and training steps.
/**
 * make(0), make(1), ... in order; while the consumer works on one, the next `ahead` are already under way: the next
 * batch's images are decoded and resized while the native model runs on this batch.
 */
export async function* prefetched<T>(count: number, make: (index: number) => Promise<T>, ahead = 1): AsyncGenerator<T> {
  const pending: Array<Promise<T>> = [];
  let next = 0;
  const start = () => {
    const promise = make(next++);
    promise.catch(() => {}); // a rejection surfaces where it is awaited below; one never awaited (early stop) is dropped
    pending.push(promise);
  };
  while (next < count || pending.length > 0) {
    if (pending.length === 0) start();
    const current = pending.shift()!;
    while (next < count && pending.length < ahead) start();
    yield await current;
  }
}
