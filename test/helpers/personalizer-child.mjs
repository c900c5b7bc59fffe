// A pigg process learning from feedback, for test/personalizer.test.ts to kill -9 in the middle of a training job:
// it feeds the first `first` samples of a user, waits for that job's decision, feeds `second` more and prints
// "training" at the first optimizer step of the second job (the parent kills it there).
//   node personalizer-child.mjs <options.json>
//   options: { dir, model, data, user, first, second, grounder: {...}, personalizer: {...} }
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readDataset } from '../../dist/data/manifest.js';
import { Grounder } from '../../dist/grounding/grounder.js';
import { Personalizer } from '../../dist/personalize/personalizer.js';

const options = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { samples } = await readDataset(options.data);
const mine = options.order.map((i) => samples.filter((s) => s.user === options.user)[i]);
const grounder = await Grounder.load(options.model, options.grounder);
let decided = 0;
const personalizer = await Personalizer.open({
  ...options.personalizer, dir: options.dir, grounder,
  onEvent: (event) => {
    if (event.type === 'decision') process.stdout.write(`decided ${event.decision.decision} ${event.decision.version}\n`);
    if (event.type === 'step' && decided > 0 && event.step === 1) process.stdout.write('training\n');
  },
});
const feed = (list) => Promise.all(list.map((s) => personalizer.feedback({ user: options.user, image: join(options.data, s.image), instruction: s.instruction, tap: s.target })));
await feed(mine.slice(0, options.first));
await personalizer.idle();
decided = 1;
await feed(mine.slice(options.first, options.first + options.second));
await new Promise(() => {}); // wait to be killed
