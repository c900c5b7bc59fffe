// Processed screenshots kept for the epochs of one training run: each epoch asks for the same images again, and on
// a small machine decoding and resizing them competes with the engine for the same cores. Bounded by the bytes of
// the pixel arrays (least recently used out), so a run over full-size screenshots keeps only what fits.
import type { ProcessedImage } from './image.js';
import type { ImageProcessor } from './image-pool.js';

/** 512 MiB: every demo screen (about 190 KB each) or about 28 PIGG-size ones (18.6 MB each). */
export const DEFAULT_IMAGE_CACHE_BYTES = 512 * 2 ** 20;

/** `images`, remembering what it returned for each file path and options; byte sources are not cached. */
export function cachedImages(images: ImageProcessor, maxBytes = DEFAULT_IMAGE_CACHE_BYTES): ImageProcessor {
  const entries = new Map<string, Promise<ProcessedImage>>();
  const sizes = new Map<string, number>();
  let bytes = 0;
  const evict = () => {
    for (const [key, size] of sizes) {
      if (bytes <= maxBytes) break;
      entries.delete(key);
      sizes.delete(key);
      bytes -= size;
    }
  };
  return (source, options) => {
    if (typeof source !== 'string' || maxBytes <= 0) return images(source, options);
    const key = `${source}\u0000${JSON.stringify(options)}`;
    const hit = entries.get(key);
    if (hit) {
      // Most recently used last (Map order), so eviction takes the oldest first.
      entries.delete(key);
      entries.set(key, hit);
      const size = sizes.get(key);
      if (size !== undefined) {
        sizes.delete(key);
        sizes.set(key, size);
      }
      return hit;
    }
    const promise = images(source, options);
    entries.set(key, promise);
    promise.then(
      (image) => {
        if (entries.get(key) !== promise) return;
        sizes.set(key, image.pixelValues.byteLength);
        bytes += image.pixelValues.byteLength;
        evict();
      },
      () => entries.delete(key), // a failure is not remembered: the next epoch reports it again
    );
    return promise;
  };
}
