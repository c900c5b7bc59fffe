// Durable file operations for the feedback store and the personalizer's state: what they acknowledge is on disk
// (fsync) before they return, and a process killed at any moment (kill -9) leaves either the old or the new state,
// never half of one.
//
// - writeFileDurable: temp file in the same folder, written and fsynced, renamed over the target, folder fsynced.
// - appendLineDurable: one write() of the whole line, then fsync; a short write is cut back before the error.
// - repairTail: a line without its newline at the end of a file (a write torn by a crash) is cut off.
// - fsyncTree: a folder written file by file (a saved adapter) made durable as a whole.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync of a folder, so a rename or a new entry in it survives a crash of the machine (a no-op where unsupported). */
export async function fsyncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    // Some file systems (and Windows) cannot fsync a folder; the rename itself is still atomic there.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw error;
  } finally {
    await handle?.close();
  }
}

/** mkdir -p, with each folder it created fsynced into its parent. */
export async function mkdirDurable(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  // `first` is the top folder created; fsync it and every parent from the new folder up to (and including) its parent.
  for (let current = dir; ; current = dirname(current)) {
    await fsyncDir(dirname(current));
    if (current === first || dirname(current) === current) break;
  }
}

/** Prefix of temp files written here; files starting with it are leftovers of a killed write (see removeTempFiles). */
export const TEMP_PREFIX = '.pigg-tmp-';

function tempName(file: string): string {
  return join(dirname(file), `${TEMP_PREFIX}${basename(file)}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Writes `data` to `file` atomically and durably (temp file + fsync + rename + fsync of the folder). */
export async function writeFileDurable(file: string, data: string | Uint8Array): Promise<void> {
  await mkdirDurable(dirname(file));
  const temp = tempName(file);
  try {
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(dirname(file));
}

/** Renames a file or folder and fsyncs the folder(s) the names are in. */
export async function renameDurable(from: string, to: string): Promise<void> {
  await rename(from, to);
  await fsyncDir(dirname(to));
  if (dirname(from) !== dirname(to)) await fsyncDir(dirname(from));
}

/** Removes temp files of killed writes in a folder (those named with TEMP_PREFIX); returns how many. */
export async function removeTempFiles(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  const temps = names.filter((name) => name.startsWith(TEMP_PREFIX));
  await Promise.all(temps.map((name) => rm(join(dir, name), { recursive: true, force: true })));
  return temps.length;
}

/**
 * Appends one line (a newline is added) with a single write, then fsyncs the file. If the write is short (a full
 * disk) or fails, the file is cut back to its length before, so no torn line stays behind this process.
 */
export async function appendLineDurable(file: string, line: string): Promise<void> {
  if (line.includes('\n')) throw new Error(`a JSONL line must not hold a newline (${file})`);
  const bytes = Buffer.from(`${line}\n`, 'utf8');
  const existed = await stat(file).then(() => true, () => false);
  const handle = await open(file, 'a');
  try {
    const { size } = await handle.stat();
    try {
      const { bytesWritten } = await handle.write(bytes, 0, bytes.length);
      if (bytesWritten !== bytes.length) throw new Error(`short write to ${file}: ${bytesWritten} of ${bytes.length} bytes`);
      await handle.sync();
    } catch (error) {
      await handle.truncate(size).catch(() => {});
      throw error;
    }
  } finally {
    await handle.close();
  }
  if (!existed) await fsyncDir(dirname(file));
}

/**
 * Cuts a torn last line (bytes after the last newline: a write a crash interrupted) off a JSONL file. Returns the
 * bytes removed (0 when the file ends with a newline, is empty or does not exist).
 */
export async function repairTail(file: string): Promise<number> {
  let handle;
  try {
    handle = await open(file, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return 0;
    // Read backwards in chunks until a newline is found.
    const chunk = Buffer.alloc(Math.min(size, 64 * 1024));
    let end = size;
    let keep = 0;
    let found = false;
    while (end > 0 && !found) {
      const start = Math.max(0, end - chunk.length);
      const { bytesRead } = await handle.read(chunk, 0, end - start, start);
      for (let i = bytesRead - 1; i >= 0; i--) {
        if (chunk[i] === 0x0a) {
          keep = start + i + 1;
          found = true;
          break;
        }
      }
      end = start;
    }
    if (keep === size) return 0;
    await handle.truncate(keep);
    await handle.sync();
    return size - keep;
  } finally {
    await handle.close();
  }
}

/** fsyncs every file of a folder (not recursive: adapter folders are flat) and the folder itself. */
export async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const handle = await open(join(dir, entry.name), 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
  await fsyncDir(dir);
}
