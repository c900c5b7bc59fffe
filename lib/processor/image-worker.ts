// One worker of ImagePool: runs processImage on the messages it gets and hands the pixel buffer back without a copy.
import { parentPort } from 'node:worker_threads';
import { processImage } from './image.js';
import type { ImageJob, ImageReply } from './image-pool.js';

const port = parentPort;
if (!port) throw new Error('image-worker.js runs only as a worker thread of ImagePool');
port.on('message', (job: ImageJob) => {
  processImage(job.source, job.options).then(
    (image) => port.postMessage({ id: job.id, image } satisfies ImageReply, [image.pixelValues.buffer as ArrayBuffer]),
    (error: Error) => port.postMessage({ id: job.id, error: error.message } satisfies ImageReply),
  );
});
