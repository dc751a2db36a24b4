/**
 * The one way this library opens a file for reading. Only regular files are read: a named pipe
 * (FIFO) in place of a weights or config file would block the open, or the read, for ever (and a
 * thread-pool thread with it, so that even process.exit() hangs); a character device such as
 * /dev/urandom never ends; a directory gives a raw EISDIR. Each is refused with a FormatError,
 * checked before the open (the message names what the path is) and again on the opened
 * descriptor, which is opened non-blocking so that a FIFO swapped in between cannot block it.
 * A missing or unreadable file keeps Node's own error (ENOENT, EACCES).
 */
import * as fs from "fs";
import { FormatError } from "../errors";

// O_NONBLOCK makes open(2) of a FIFO return at once; reads of a regular file ignore it.
// Windows has no FIFOs to open this way and no such flag.
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/** Largest JSON text (a config) read into memory: real ones are a few KiB. */
export const MAX_JSON_BYTES = 16 << 20;

/** What a non-regular file is, in words. */
function kindOf(stats: fs.Stats): string {
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a named pipe (FIFO)";
  if (stats.isSocket()) return "a socket";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  return "not a regular file";
}

function refuse(file: string, stats: fs.Stats): never {
  throw new FormatError(`${file}: is ${kindOf(stats)}, not a regular file; only regular files are read`);
}

/**
 * Opens `file` for reading after checking that it is a regular file (a symbolic link is followed
 * and its target checked). Returns the descriptor; the caller closes it.
 *
 * @throws FormatError for a directory, FIFO, socket or device; Node's error when it cannot be opened.
 */
export function openRegularFileSync(file: string): number {
  const before = fs.statSync(file);
  if (!before.isFile()) refuse(file, before);
  const fd = fs.openSync(file, READ_FLAGS);
  try {
    const opened = fs.fstatSync(fd);
    if (!opened.isFile()) refuse(file, opened);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

/** {@link openRegularFileSync} returning a `FileHandle`, without blocking the event loop. */
export async function openRegularFile(file: string): Promise<fs.promises.FileHandle> {
  const before = await fs.promises.stat(file);
  if (!before.isFile()) refuse(file, before);
  const handle = await fs.promises.open(file, READ_FLAGS);
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) refuse(file, opened);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return handle;
}

function tooLarge(file: string, size: number): never {
  throw new FormatError(`${file}: ${size} bytes, more than the ${MAX_JSON_BYTES} a JSON config may have`);
}

/**
 * Reads a (JSON) text file, a regular file of at most {@link MAX_JSON_BYTES} bytes, as UTF-8.
 *
 * @throws FormatError for a file that is not regular or is too large; Node's error when it cannot be opened.
 */
export function readTextFileSync(file: string): string {
  const fd = openRegularFileSync(file);
  try {
    const size = fs.fstatSync(fd).size;
    if (size > MAX_JSON_BYTES) tooLarge(file, size);
    return fs.readFileSync(fd, "utf8");
  } finally {
    fs.closeSync(fd);
  }
}

/** {@link readTextFileSync} without blocking the event loop. */
export async function readTextFile(file: string): Promise<string> {
  const handle = await openRegularFile(file);
  try {
    const size = (await handle.stat()).size;
    if (size > MAX_JSON_BYTES) tooLarge(file, size);
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}
