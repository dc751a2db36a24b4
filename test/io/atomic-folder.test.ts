/**
 * The atomic replacement of a whole folder (lib/io/atomic-folder.ts), called directly: what the
 * new folder holds, which siblings remain next to it (the clean-up of backups and of temporary
 * folders left by dead processes), the recovery of the backup an interrupted replacement left,
 * and the refusals that leave everything as it was. (Saves through the adapter API are in
 * test/peft/atomic-save.test.ts; crashes in test/reliability/killed-adapter-save.test.ts.)
 */
// The module object itself (not a namespace copy), so that jest.spyOn can replace its functions.
import fs = require("fs");
import * as path from "path";
import { spawn, spawnSync } from "child_process";
import { findFolderOrBackup, replaceFolder, replaceFolderSync } from "../../lib/io/atomic-folder";
import { tempDir } from "../helpers/temp";
import { itUnless } from "../helpers/skip";

let parent: string;
let cleanup: () => void;
beforeEach(() => ({ dir: parent, cleanup } = tempDir("tl-atomic-folder-")));
afterEach(() => {
  jest.restoreAllMocks();
  cleanup();
});

/** Every entry under `dir`, by relative path: a file's text, "dir", or where a link points. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name);
      const key = path.join(rel, name);
      const stats = fs.lstatSync(full);
      if (stats.isSymbolicLink()) out[key] = `link -> ${fs.readlinkSync(full)}`;
      else if (stats.isDirectory()) {
        out[key] = "dir";
        walk(full, key);
      } else out[key] = stats.isFile() ? `file: ${fs.readFileSync(full, "utf8")}` : "other";
    }
  };
  walk(dir, "");
  return out;
}

/** A folder holding `files` (relative path → text; subfolders are created). */
function makeFolder(dir: string, files: Record<string, string>): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
}

/** The name a replacement of `base` gives its backups (`old`) and its work folder (`tmp`). */
function sibling(base: string, kind: "tmp" | "old", pid: number, hex = "0123456789ab"): string {
  return `.${base}.${kind}-${pid}-${hex}`;
}

/** The pid of a process that has exited (and been reaped): no process answers to it. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  expect(child.status).toBe(0);
  expect(() => process.kill(child.pid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
  return child.pid;
}

/** Changes `file`'s mode until its change time is strictly later than that of each of `others` (the clock is coarse). */
function makeNewest(file: string, others: string[]): void {
  const latest = Math.max(...others.map((o) => fs.statSync(o).ctimeMs));
  const wait = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    fs.chmodSync(file, 0o700);
    if (fs.statSync(file).ctimeMs > latest) return;
    Atomics.wait(wait, 0, 0, 5);
  }
}

const replacements = [
  ["replaceFolderSync", (target: string, fill: (dir: string) => void) => Promise.resolve().then(() => replaceFolderSync(target, fill))],
  ["replaceFolder", (target: string, fill: (dir: string) => void) => replaceFolder(target, async (dir) => fill(dir))],
] as const;

describe.each(replacements)("%s", (_name, replace) => {
  it("creates a missing folder with what fill writes, and nothing next to it", async () => {
    const target = path.join(parent, "out");
    await replace(target, (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
    expect(contents(parent)).toEqual({ out: "dir", "out/a.txt": "file: new a" });
  });

  it("creates the missing parent folders of the target", async () => {
    const target = path.join(parent, "x", "y", "out");
    await replace(target, (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
    expect(contents(parent)).toEqual({ x: "dir", "x/y": "dir", "x/y/out": "dir", "x/y/out/a.txt": "file: new a" });
  });

  it("replaces the written entries and carries the others over: files, subfolders and symbolic links", async () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "a.txt": "old a", "b.txt": "old b", "sub/c.txt": "old c", "written/d.txt": "old d" });
    fs.symlinkSync("b.txt", path.join(target, "to-b"));
    const oldInode = fs.statSync(path.join(target, "b.txt")).ino;
    await replace(target, (dir) => {
      fs.writeFileSync(path.join(dir, "a.txt"), "new a");
      fs.mkdirSync(path.join(dir, "written"));
    });
    expect(contents(parent)).toEqual({
      out: "dir",
      "out/a.txt": "file: new a",
      "out/b.txt": "file: old b",
      "out/sub": "dir",
      "out/sub/c.txt": "file: old c",
      "out/to-b": "link -> b.txt",
      "out/written": "dir", // written anew (empty): the old subfolder is not merged into it
    });
    // Carried as a hard link: the old file was never copied or touched.
    expect(fs.statSync(path.join(target, "b.txt")).ino).toBe(oldInode);
  });

  it("copies an entry that cannot be hard-linked", async () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "b.txt": "old b" });
    const oldInode = fs.statSync(path.join(target, "b.txt")).ino;
    // As on a file system without hard links, or across a mount inside the folder.
    jest.spyOn(fs, "linkSync").mockImplementation(() => {
      throw Object.assign(new Error("EXDEV: cross-device link not permitted"), { code: "EXDEV" });
    });
    await replace(target, (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
    expect(contents(parent)).toEqual({ out: "dir", "out/a.txt": "file: new a", "out/b.txt": "file: old b" });
    expect(fs.statSync(path.join(target, "b.txt")).ino).not.toBe(oldInode);
  });

  itUnless(
    spawnSync("mkfifo", ["--version"]).status === 0 ? null : "no mkfifo",
    "does not carry a FIFO over (nothing this library writes is one)",
    async () => {
      const target = path.join(parent, "out");
      makeFolder(target, { "b.txt": "old b" });
      expect(spawnSync("mkfifo", [path.join(target, "pipe")]).status).toBe(0);
      await replace(target, (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
      expect(contents(parent)).toEqual({ out: "dir", "out/a.txt": "file: new a", "out/b.txt": "file: old b" });
    },
  );

  it("a failing fill leaves the old folder as it was, and no temporary folder", async () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "a.txt": "old a", "sub/c.txt": "old c" });
    const before = contents(parent);
    await expect(
      replace(target, (dir) => {
        fs.writeFileSync(path.join(dir, "a.txt"), "half-written");
        throw new Error("fill failed");
      }),
    ).rejects.toThrow("fill failed");
    expect(contents(parent)).toEqual(before);
  });

  it("a fill that removes its own folder before failing: the caller gets fill's error", async () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "a.txt": "old a" });
    const before = contents(parent);
    await expect(
      replace(target, (dir) => {
        fs.rmSync(dir, { recursive: true });
        throw new Error("fill failed");
      }),
    ).rejects.toThrow("fill failed");
    expect(contents(parent)).toEqual(before);
  });

  it("refuses a target that is a file, naming it, before anything is written", async () => {
    const target = path.join(parent, "out");
    fs.writeFileSync(target, "a file");
    const fill = jest.fn();
    const err = await replace(target, fill).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(TypeError);
    expect(err!.message).toBe(`${target}: exists and is not a folder`);
    expect(fill).not.toHaveBeenCalled();
    expect(contents(parent)).toEqual({ out: "file: a file" });
  });

  it("refuses a symbolic link to a file, naming the link", async () => {
    fs.writeFileSync(path.join(parent, "file"), "a file");
    const link = path.join(parent, "link");
    fs.symlinkSync("file", link);
    await expect(replace(link, () => undefined)).rejects.toThrow(TypeError);
    await expect(replace(link, () => undefined)).rejects.toThrow(`${link}: exists and is not a folder`);
    expect(contents(parent)).toEqual({ file: "file: a file", link: "link -> file" });
  });

  it("replaces the folder a symbolic link points to where it is, and the link stays a link", async () => {
    const elsewhere = path.join(parent, "elsewhere");
    makeFolder(path.join(elsewhere, "real"), { "a.txt": "old a", "b.txt": "old b" });
    fs.mkdirSync(path.join(parent, "links"));
    const link = path.join(parent, "links", "link");
    fs.symlinkSync(path.join("..", "elsewhere", "real"), link);
    await replace(link, (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
    // The work folder and the backup were siblings of the real folder, and are gone.
    expect(contents(parent)).toEqual({
      elsewhere: "dir",
      "elsewhere/real": "dir",
      "elsewhere/real/a.txt": "file: new a",
      "elsewhere/real/b.txt": "file: old b",
      links: "dir",
      "links/link": "link -> ../elsewhere/real",
    });
  });
});

describe("the clean-up of stale siblings after a replacement", () => {
  it("removes backups and the temporary folders of dead processes, and keeps everything else", async () => {
    const base = "out";
    makeFolder(path.join(parent, base), { "a.txt": "old a" });
    const dead = deadPid();
    const stale = [sibling(base, "old", dead), sibling(base, "old", process.pid, "ffffffffffff"), sibling(base, "tmp", dead, "abcdef012345")];
    for (const name of stale) makeFolder(path.join(parent, name), { "x.txt": "litter" });
    const live = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      const kept = [
        sibling(base, "tmp", live.pid!), // another process is replacing the folder right now
        sibling(base, "tmp", 99999999999), // not a pid that can be checked: kept rather than guessed
        sibling("other", "old", dead), // another folder's backup
        sibling(`${base}x`, "old", dead),
        `.${base}.old-${dead}-0123`, // not a name a replacement gives
        `.${base}.old-${dead}-0123456789AB`,
        `${base}.old-${dead}-0123456789ab`,
      ];
      for (const name of kept) makeFolder(path.join(parent, name), { "x.txt": "kept" });
      replaceFolderSync(path.join(parent, base), (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
      expect(fs.readdirSync(parent).sort()).toEqual([base, ...kept].sort());
      for (const name of kept) expect(fs.readFileSync(path.join(parent, name, "x.txt"), "utf8")).toBe("kept");
      expect(fs.readFileSync(path.join(parent, base, "a.txt"), "utf8")).toBe("new a");
    } finally {
      live.kill();
    }
  });

  it("matches a folder name with dots literally", () => {
    const base = "model.v1.final";
    makeFolder(path.join(parent, base), { "a.txt": "old a" });
    const dead = deadPid();
    makeFolder(path.join(parent, sibling(base, "old", dead)), { "x.txt": "litter" });
    makeFolder(path.join(parent, sibling(base, "tmp", dead)), { "x.txt": "litter" });
    const kept = [sibling("modelXv1.final", "old", dead), sibling("model.v1Xfinal", "old", dead), sibling("model.v1.finalX", "tmp", dead)];
    for (const name of kept) makeFolder(path.join(parent, name), { "x.txt": "kept" });
    replaceFolderSync(path.join(parent, base), (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
    expect(fs.readdirSync(parent).sort()).toEqual([base, ...kept].sort());
  });

  it("keeps the work folder of a replacement still running in this process", async () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "a.txt": "old a" });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const filling = new Promise<void>((resolve) => (entered = resolve));
    const slow = replaceFolder(target, async (dir) => {
      fs.writeFileSync(path.join(dir, "slow.txt"), "slow");
      entered();
      await released;
      fs.writeFileSync(path.join(dir, "slow-late.txt"), "slow, after the other replacement");
    });
    await Promise.race([filling, slow]); // (slow settles first only if it failed)
    // A second replacement finishes (and clears litter) while the first is still filling.
    replaceFolderSync(target, (dir) => fs.writeFileSync(path.join(dir, "fast.txt"), "fast"));
    expect(fs.readdirSync(parent).filter((n) => n.startsWith(".out.tmp-"))).toHaveLength(1);
    release();
    await slow;
    // The slow one finished last: its files, and what it carried over from the fast one's folder.
    expect(contents(parent)).toEqual({
      out: "dir",
      "out/a.txt": "file: old a",
      "out/fast.txt": "file: fast",
      "out/slow-late.txt": "file: slow, after the other replacement",
      "out/slow.txt": "file: slow",
    });
  });
});

describe("an interrupted replacement: the folder is gone, its backup is next to it", () => {
  it("findFolderOrBackup gives the folder when it exists, even with backups next to it", () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "a.txt": "a" });
    makeFolder(path.join(parent, sibling("out", "old", 1)), { "a.txt": "backup" });
    expect(findFolderOrBackup(target)).toBe(target);
  });

  it("findFolderOrBackup gives null when there is neither folder nor backup, or no parent folder", () => {
    makeFolder(path.join(parent, sibling("other", "old", 1)), {});
    makeFolder(path.join(parent, sibling("out", "tmp", 1)), {});
    fs.writeFileSync(path.join(parent, "zzz-newer-file"), "");
    expect(findFolderOrBackup(path.join(parent, "out"))).toBeNull();
    expect(findFolderOrBackup(path.join(parent, "no", "such", "out"))).toBeNull();
  });

  it("findFolderOrBackup gives the newest backup, wherever it is listed", () => {
    const names = ["aaaaaaaaaaaa", "555555555555", "cccccccccccc"].map((hex) => sibling("out", "old", 7, hex));
    for (const name of names) makeFolder(path.join(parent, name), {});
    // Each backup in turn is made the newest (a change of its mode sets its change time).
    for (const newest of names) {
      makeNewest(
        path.join(parent, newest),
        names.filter((n) => n !== newest).map((n) => path.join(parent, n)),
      );
      expect(findFolderOrBackup(path.join(parent, "out"))).toBe(path.join(parent, newest));
    }
    // A relative path is resolved against the working directory.
    expect(findFolderOrBackup(path.relative(process.cwd(), path.join(parent, "out")))).toBe(path.join(parent, names[2]));
  });

  it("a replacement carries the backup's entries and mode over, then removes the backup", async () => {
    const backup = path.join(parent, sibling("out", "old", deadPid()));
    makeFolder(backup, { "a.txt": "old a", "sub/c.txt": "old c" });
    fs.chmodSync(backup, 0o750);
    await replaceFolder(path.join(parent, "out"), async (dir) => fs.writeFileSync(path.join(dir, "b.txt"), "new b"));
    expect(contents(parent)).toEqual({ out: "dir", "out/a.txt": "file: old a", "out/b.txt": "file: new b", "out/sub": "dir", "out/sub/c.txt": "file: old c" });
    expect(fs.statSync(path.join(parent, "out")).mode & 0o777).toBe(0o750);
  });
});

describe("the working directory", () => {
  it("inside a subfolder whose name starts with two dots, follows the folder", () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "..notes/n.txt": "n" });
    const cwd = process.cwd();
    try {
      process.chdir(path.join(target, "..notes"));
      replaceFolderSync(target, (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
      expect(fs.realpathSync.native(".")).toBe(fs.realpathSync(path.join(target, "..notes")));
      expect(fs.readFileSync("n.txt", "utf8")).toBe("n");
    } finally {
      process.chdir(cwd);
    }
  });

  it("outside the folder, stays where it is", () => {
    const target = path.join(parent, "out");
    makeFolder(target, { "a.txt": "old a" });
    makeFolder(path.join(parent, "elsewhere"), {});
    const cwd = process.cwd();
    try {
      process.chdir(path.join(parent, "elsewhere"));
      replaceFolderSync(target, (dir) => fs.writeFileSync(path.join(dir, "a.txt"), "new a"));
      expect(fs.realpathSync.native(".")).toBe(fs.realpathSync(path.join(parent, "elsewhere")));
    } finally {
      process.chdir(cwd);
    }
  });
});
