/**
 * Atomic folder replacement: a folder whose files must change together (an adapter's weights and
 * its config) is written as a whole new folder next to it, flushed, and switched in by renames.
 * A reader, a failure or a crash at any moment leaves the complete old folder or the complete new
 * one, never old weights with a new config.
 *
 * The switch takes two renames, because POSIX has no portable atomic exchange of two folders:
 * the old folder first moves aside to `.<name>.old-<id>`, then the new one takes its name. A
 * failed second rename moves the old folder back. A crash between the two leaves no folder under
 * the name, but the complete old one under its backup name: {@link findFolderOrBackup} is how
 * readers find it, and the next replacement clears it away.
 *
 * Entries of the old folder that the new contents do not replace (other files, subfolders) are
 * carried into the new folder as hard links (copies where hard links are not possible), so the
 * old folder stays untouched until the switch.
 */
import * as fs from "fs";
import * as nodePath from "path";
import { randomBytes } from "crypto";
import { fsyncDirSync } from "./atomic";

/** The hidden sibling names used while replacing `base`: `.<base>.tmp-<pid>-<hex>` and `.<base>.old-<pid>-<hex>`. */
function siblingName(base: string, kind: "tmp" | "old"): string {
  return `.${base}.${kind}-${process.pid}-${randomBytes(6).toString("hex")}`;
}

function siblingPattern(base: string, kind: "tmp" | "old"): RegExp {
  return new RegExp(`^\\.${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.${kind}-(\\d+)-[0-9a-f]{12}$`);
}

/** Where the folder goes, with a symbolic link resolved so the link itself stays a link. */
function resolveTarget(target: string): { real: string; parent: string; base: string; exists: boolean } {
  let real = nodePath.resolve(target);
  let exists = false;
  try {
    real = fs.realpathSync(real);
    exists = true;
  } catch {
    // Not there yet: it is created under this name.
  }
  if (exists && !fs.statSync(real).isDirectory()) throw new TypeError(`${target}: exists and is not a folder`);
  return { real, parent: nodePath.dirname(real), base: nodePath.basename(real), exists };
}

/** Recreates `from` (a file or a folder tree) at `to` with hard links, copying what cannot be linked. */
function carrySync(from: string, to: string): void {
  const stats = fs.lstatSync(from);
  if (stats.isDirectory()) {
    fs.mkdirSync(to);
    for (const name of fs.readdirSync(from)) carrySync(nodePath.join(from, name), nodePath.join(to, name));
    fs.chmodSync(to, stats.mode & 0o7777); // last, so a read-only folder is filled first
  } else if (stats.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(from), to);
  } else if (stats.isFile()) {
    try {
      fs.linkSync(from, to);
    } catch {
      fs.copyFileSync(from, to);
    }
  }
  // Sockets, FIFOs and devices are not carried: nothing this library writes is one.
}

/**
 * Where the working directory is inside `folder` (a relative path, "" for the folder itself), or
 * null when it is elsewhere. Asked of the kernel: process.cwd() is cached and would not notice
 * the folder moving.
 */
function workingDirectoryIn(folder: string): string | null {
  try {
    const rel = nodePath.relative(folder, fs.realpathSync.native("."));
    // ".." itself or a path through it is outside; a subfolder named "..x" is inside.
    return rel === ".." || rel.startsWith(`..${nodePath.sep}`) || nodePath.isAbsolute(rel) ? null : rel;
  } catch {
    return null;
  }
}

/**
 * A process working inside the replaced folder would be left in the backup, which is about to be
 * deleted: move it to the same place in the new folder (or to the folder itself).
 */
function followWorkingDirectory(rel: string | null, real: string): void {
  if (rel === null) return;
  try {
    const same = nodePath.join(real, rel);
    process.chdir(fs.existsSync(same) ? same : real);
  } catch {
    // Worker threads cannot change directory; their relative paths were already ambiguous.
  }
}

/** Whether the process that made a `.tmp-<pid>-` folder is gone (so the folder is litter). */
function isDead(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** Removes backups of `base` and temporary folders of dead processes, left by earlier crashes. */
function clearLitter(parent: string, base: string): void {
  const old = siblingPattern(base, "old");
  const tmp = siblingPattern(base, "tmp");
  for (const name of fs.readdirSync(parent)) {
    const t = tmp.exec(name);
    if (old.test(name) || (t && isDead(Number(t[1])))) fs.rmSync(nodePath.join(parent, name), { recursive: true, force: true });
  }
}

/** The steps of a replacement, for the sync and async entry points. */
interface Replacement {
  real: string;
  parent: string;
  base: string;
  exists: boolean;
  /** The old folder whose other entries are carried over: the target, or the backup an interrupted replacement left. */
  old: string | null;
  temp: string;
}

function begin(target: string): Replacement {
  const { real, parent, base, exists } = resolveTarget(target);
  if (!fs.existsSync(parent)) fs.mkdirSync(parent, { recursive: true });
  const old = exists ? real : findFolderOrBackup(real);
  const temp = nodePath.join(parent, siblingName(base, "tmp"));
  fs.mkdirSync(temp);
  return { real, parent, base, exists, old, temp };
}

/** Carries over the old entries not written anew, flushes, and switches the folders. */
function finish(r: Replacement): void {
  if (r.old !== null) {
    const written = new Set(fs.readdirSync(r.temp));
    for (const name of fs.readdirSync(r.old)) if (!written.has(name)) carrySync(nodePath.join(r.old, name), nodePath.join(r.temp, name));
    // Set last, so that a read-only folder is still written into first.
    fs.chmodSync(r.temp, fs.statSync(r.old).mode & 0o7777);
  }
  fsyncDirSync(r.temp);
  if (!r.exists) {
    fs.renameSync(r.temp, r.real);
  } else {
    const backup = nodePath.join(r.parent, siblingName(r.base, "old"));
    const cwd = workingDirectoryIn(r.real);
    fs.renameSync(r.real, backup);
    try {
      fs.renameSync(r.temp, r.real);
    } catch (err) {
      fs.renameSync(backup, r.real);
      throw err;
    }
    followWorkingDirectory(cwd, r.real);
  }
  fsyncDirSync(r.parent);
  // Only now is the old folder (and litter from earlier crashes) no longer needed.
  try {
    clearLitter(r.parent, r.base);
  } catch {
    // Litter that cannot be removed now is removed by a later replacement.
  }
}

function abandon(r: Replacement): void {
  fs.rmSync(r.temp, { recursive: true, force: true });
}

/**
 * Replaces the folder `target` atomically with one that `fill` writes (synchronous twin of
 * {@link replaceFolder}). `fill` receives the new folder's path and writes its files there
 * (flushed: use the atomic writers); entries of the old folder it does not write are carried over.
 * If `fill` or the switch fails, the old folder is left as it was and the error is rethrown.
 *
 * @param target The folder to create or replace; missing parent folders are created.
 */
export function replaceFolderSync(target: string, fill: (dir: string) => void): void {
  const r = begin(target);
  try {
    fill(r.temp);
    finish(r);
  } catch (err) {
    abandon(r);
    throw err;
  }
}

/** {@link replaceFolderSync} with an asynchronous `fill`. */
export async function replaceFolder(target: string, fill: (dir: string) => Promise<void>): Promise<void> {
  const r = begin(target);
  try {
    await fill(r.temp);
    finish(r);
  } catch (err) {
    abandon(r);
    throw err;
  }
}

/**
 * `folder` when it exists; otherwise the backup a replacement interrupted between its two renames
 * left next to it (the complete old folder), or null when there is neither.
 */
export function findFolderOrBackup(folder: string): string | null {
  if (fs.existsSync(folder)) return folder;
  const parent = nodePath.dirname(nodePath.resolve(folder));
  const base = nodePath.basename(nodePath.resolve(folder));
  const old = siblingPattern(base, "old");
  let names: string[];
  try {
    names = fs.readdirSync(parent).filter((n) => old.test(n));
  } catch {
    return null;
  }
  if (names.length === 0) return null;
  // Several backups only after several interrupted replacements: the latest is the newest folder.
  const newest = names.map((n) => ({ path: nodePath.join(parent, n), time: fs.statSync(nodePath.join(parent, n)).ctimeMs })).sort((a, b) => b.time - a.time)[0];
  return newest.path;
}
