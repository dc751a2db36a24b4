/**
 * Atomic file replacement: the data goes to a temporary file in the target's folder, is flushed
 * to disk, and only then renamed over the target. A reader (or a crash at any moment) sees
 * either the complete old file or the complete new one, never a half-written mix.
 */
import * as fs from "fs";
import * as nodePath from "path";
import { randomBytes } from "crypto";
import { describe } from "../errors";

/** What {@link writeFileAtomicSync} accepts: a string (written as UTF-8), bytes, or chunks of bytes produced on demand. */
export type AtomicData = string | Uint8Array | Iterable<Uint8Array>;

/** What {@link writeFileAtomic} accepts: everything {@link AtomicData} does, plus an async stream of chunks. */
export type AtomicDataAsync = AtomicData | AsyncIterable<Uint8Array>;

/** Options of the atomic writers. */
export interface AtomicWriteOptions {
  /** Permission bits of the new file (before the umask). Default 0o666. */
  mode?: number;
}

// Writes larger than this are split: a single write(2) of several GiB is not portable.
const MAX_WRITE = 1 << 30;

/**
 * The temporary name used while writing `target`: a hidden file next to it, so that the final
 * rename stays within one file system (rename across file systems is not atomic).
 */
function tempPathFor(target: string): string {
  const dir = nodePath.dirname(target);
  const base = nodePath.basename(target);
  return nodePath.join(dir, `.${base}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
}

function checkArgs(target: unknown, options: AtomicWriteOptions): { target: string; mode: number } {
  if (typeof target !== "string" || target.length === 0) {
    throw new TypeError(`path: expected a non-empty string, got ${describe(target)}`);
  }
  const mode = options.mode ?? 0o666;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new TypeError(`options.mode: expected permission bits between 0 and 0o7777, got ${describe(options.mode)}`);
  }
  checkFolder(target);
  return { target, mode };
}

/**
 * The target's folder must exist: otherwise creating the temporary file would fail with an ENOENT
 * naming that temporary file, which the caller never asked for.
 */
function checkFolder(target: string): void {
  const folder = folderOf(target);
  let stats: fs.Stats;
  try {
    stats = fs.statSync(folder);
  } catch {
    throw Object.assign(new Error(`ENOENT: ${target}: the folder ${folder} does not exist; create it first`), { code: "ENOENT", path: folder });
  }
  if (!stats.isDirectory()) throw Object.assign(new Error(`ENOTDIR: ${target}: ${folder} is not a folder`), { code: "ENOTDIR", path: folder });
}

function asChunk(chunk: unknown, index: number): Uint8Array {
  if (!(chunk instanceof Uint8Array)) {
    throw new TypeError(`data: chunk ${index} is ${describe(chunk)}; expected a Uint8Array or Buffer`);
  }
  return chunk;
}

function checkData(data: unknown): void {
  if (typeof data === "string" || data instanceof Uint8Array) return;
  if (data !== null && typeof data === "object" && (Symbol.iterator in data || Symbol.asyncIterator in data)) return;
  throw new TypeError(`data: expected a string, a Uint8Array or an iterable of Uint8Array chunks, got ${describe(data)}`);
}

/** Opens the folder and flushes its entries, so that the rename itself survives a power loss. */
export function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // Some platforms (Windows) and file systems cannot open or fsync a folder; the rename is still atomic there.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(dir, "r");
    await handle.sync();
  } catch {
    // See fsyncDirSync.
  } finally {
    await handle?.close();
  }
}

function writeAllSync(fd: number, chunk: Uint8Array): void {
  let offset = 0;
  while (offset < chunk.byteLength) {
    offset += fs.writeSync(fd, chunk, offset, Math.min(chunk.byteLength - offset, MAX_WRITE));
  }
}

async function writeAll(handle: fs.promises.FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, Math.min(chunk.byteLength - offset, MAX_WRITE));
    offset += bytesWritten;
  }
}

/**
 * Replaces the file at `path` atomically with `data` (synchronous twin of {@link writeFileAtomic}).
 *
 * The data is written to `.<name>.tmp-<pid>-<random>` in the same folder, flushed with fsync,
 * renamed over `path`, and the folder is flushed too where the platform allows. If anything fails
 * (including an exception thrown by a chunk iterator) the temporary file is removed and `path`
 * is left as it was. A process killed mid-write leaves `path` intact and a stray temporary file.
 *
 * @param path The file to create or replace; its folder must exist.
 * @param data A string (UTF-8), bytes, or an iterable of byte chunks (consumed lazily, so a large
 *   file never has to exist in memory as one piece).
 * @param options `mode`: permission bits of the new file (default 0o666, before the umask).
 */
export function writeFileAtomicSync(path: string, data: AtomicData, options: AtomicWriteOptions = {}): void {
  const { target, mode } = checkArgs(path, options);
  checkData(data);
  if (typeof data !== "string" && !(data instanceof Uint8Array) && !(Symbol.iterator in data)) {
    throw new TypeError("data: an async iterable needs writeFileAtomic (the Promise version)");
  }
  const temp = tempPathFor(target);
  let fd: number | undefined = fs.openSync(temp, "wx", mode);
  try {
    if (typeof data === "string") writeAllSync(fd, Buffer.from(data, "utf8"));
    else if (data instanceof Uint8Array) writeAllSync(fd, data);
    else {
      let i = 0;
      for (const chunk of data) writeAllSync(fd, asChunk(chunk, i++));
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(temp, target);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // Already failing; the original error is the one worth reporting.
      }
    }
    try {
      fs.unlinkSync(temp);
    } catch {
      // The temporary file may not exist any more (rename partly succeeded or it was never created).
    }
    throw err;
  }
  fsyncDirSync(folderOf(target));
}

/**
 * Replaces the file at `path` atomically with `data`.
 *
 * Same contract as {@link writeFileAtomicSync}; additionally accepts an async iterable of chunks.
 *
 * @param path The file to create or replace; its folder must exist.
 * @param data A string (UTF-8), bytes, or a (sync or async) iterable of byte chunks.
 * @param options `mode`: permission bits of the new file (default 0o666, before the umask).
 */
export async function writeFileAtomic(path: string, data: AtomicDataAsync, options: AtomicWriteOptions = {}): Promise<void> {
  const { target, mode } = checkArgs(path, options);
  checkData(data);
  const temp = tempPathFor(target);
  let handle: fs.promises.FileHandle | undefined = await fs.promises.open(temp, "wx", mode);
  try {
    if (typeof data === "string") await writeAll(handle, Buffer.from(data, "utf8"));
    else if (data instanceof Uint8Array) await writeAll(handle, data);
    else {
      let i = 0;
      for await (const chunk of data as AsyncIterable<Uint8Array>) await writeAll(handle, asChunk(chunk, i++));
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.promises.rename(temp, target);
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fs.promises.unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(folderOf(target));
}

function folderOf(file: string): string {
  return nodePath.dirname(nodePath.resolve(file));
}
