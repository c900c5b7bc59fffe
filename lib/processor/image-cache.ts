// Processed screenshots kept for the epochs of one training run: each epoch asks for the same images again, and on
// a small machine decoding and resizing them competes with the engine for the same cores. Bounded by the bytes of
// the pixel arrays (least recently used out), so a run over full-size screenshots keeps only what fits.
import type { ProcessedImage } from './image.js';
import type { ImageProcessor } from './image-pool.js';

/** 512 MiB: every demo screen (about 190 KB each) or about 28 PIGG-size ones (18.6 MB each). */
export const DEFAULT_IMAGE_CACHE_BYTES = 512 * 2 ** 20;

/** `images`, remembering what it returned for each file path and options; byte sources are not cached. */
export function cachedImages(images: ImageProcessor, maxBytes = DEFAULT_IMAGE_CACHE_BYTES): ImageProcessor {
  // Map order is recency (a hit moves its entry last), so eviction takes the least recently used first. An entry's
  // bytes are counted once its image has arrived.
  const entries = new Map<string, { image: Promise<ProcessedImage>; bytes: number }>();
  let bytes = 0;
  return (source, options) => {
    if (typeof source !== 'string' || maxBytes <= 0) return images(source, options);
    const key = `${source}\u0000${JSON.stringify(options)}`;
    const hit = entries.get(key);
    if (hit) {
      entries.delete(key);
      entries.set(key, hit);
      return hit.image;
    }
    const entry = { image: images(source, options), bytes: 0 };
    entries.set(key, entry);
    entry.image.then(
      (image) => {
        if (entries.get(key) !== entry) return;
        entry.bytes = image.pixelValues.byteLength;
        bytes += entry.bytes;
        for (const [oldKey, old] of entries) {
          if (bytes <= maxBytes) break;
          if (old.bytes === 0) continue; // still being processed
          entries.delete(oldKey);
          bytes -= old.bytes;
        }
      },
      () => entries.delete(key), // a failure is not remembered: the next epoch reports it again
    );
    return entry.image;
  };
}
