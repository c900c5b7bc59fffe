// The CommonJS entry, `require('pigg')`. pigg is an ES module: Node 20.19+ and 22.12+ load it through require()
// (20.17-20.18 with --experimental-require-module). Where Node cannot, this says what to do in one line instead of
// ERR_REQUIRE_ESM's stack.
import type * as Pigg from './index.js';

function load(): typeof Pigg {
  try {
    return require('./index.js') as typeof Pigg;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM') throw error;
    throw new Error(`pigg is an ES module and Node ${process.version} cannot require() it without a flag: use \`await import('pigg')\`, `
      + 'run node with --experimental-require-module (Node 20.17+), or use Node 20.19+ or 22.12+');
  }
}

export = load();
