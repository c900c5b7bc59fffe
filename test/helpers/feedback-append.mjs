// Appends feedback to a FeedbackStore in a loop, printing "ack <count>" once each append has resolved (is durable),
// until it is killed. Used by test/feedback.test.ts to kill -9 a writer at an arbitrary moment.
//   node feedback-append.mjs <store-root> <user> <image-file>
import { readFileSync } from 'node:fs';
import { FeedbackStore } from '../../dist/personalize/store.js';

const [root, user, imageFile] = process.argv.slice(2);
const image = readFileSync(imageFile);
const { store } = await FeedbackStore.open(root);
for (let i = 0; ; i++) {
  const { count } = await store.append({ user, image, instruction: `Tap item ${i} ${'x'.repeat(i % 50)}`, tap: { x: i % 64, y: (i * 7) % 128 } });
  process.stdout.write(`ack ${count}\n`);
}
