// The feedback folder's lock, so two processes never train on and write one folder's state at once.
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdirDurable } from './durable.js';
import { feedbackError } from './store.js';

/**
 * One process at a time owns a feedback folder: <dir>/personalizer.lock holds its pid. A lock whose process is gone
 * (killed) is taken over; a live one (this process included: a Personalizer not closed) is an error.
 */
export async function takeLock(dir: string): Promise<string> {
  await mkdirDurable(dir);
  const file = join(dir, 'personalizer.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(file, 'wx');
      try {
        await handle.writeFile(`${JSON.stringify({ pid: process.pid, since: new Date().toISOString() })}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return file;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder: { pid?: number } = {};
    try {
      holder = JSON.parse(await readFile(file, 'utf8')) as { pid?: number };
    } catch {
      // half written by a process killed while taking it: stale
    }
    if (typeof holder.pid === 'number' && isAlive(holder.pid)) {
      throw feedbackError('INVALID_ARGUMENT', 'dir', `${dir} is in use by ${holder.pid === process.pid ? 'another Personalizer of this process (close it first)' : `process ${holder.pid}`} (${file})`);
    }
    await rm(file, { force: true });
  }
  throw new Error(`cannot take ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
