/**
 * The durability steps of the atomic writers, which no ordinary read-back can see: the data is
 * flushed before the rename, the folder is flushed after it, every descriptor opened is closed,
 * short writes are resumed, the temporary file is a hidden sibling of the target, and a folder
 * that cannot be flushed does not fail the write. The fs calls are observed through mocks that
 * call the real functions.
 */
import * as fs from "fs";
import * as path from "path";
import { writeFileAtomic, writeFileAtomicSync } from "../../lib/io";
import { tempDir } from "./support/files";

/** The sync calls observed: node's own fs functions cannot be spied on in place (they are not configurable). */
const OBSERVED = ["openSync", "fsyncSync", "closeSync", "renameSync", "writeSync"] as const;
jest.mock("fs", () => {
  const actual = jest.requireActual("fs");
  const names = ["openSync", "fsyncSync", "closeSync", "renameSync", "writeSync"]; // OBSERVED (jest.mock runs before it exists)
  return { ...actual, ...Object.fromEntries(names.map((name) => [name, jest.fn(actual[name])])) };
});
const real = jest.requireActual<typeof fs>("fs");

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => {
  jest.restoreAllMocks();
  for (const name of OBSERVED) (fs[name] as jest.Mock).mockImplementation(real[name] as never);
  cleanup();
});

/** Spies on the sync fs calls the writer makes; returns the log of calls, in order, with fds mapped to the path they were opened from. */
function recordSync(): string[] {
  const log: string[] = [];
  const opened = new Map<number, string>();
  (fs.openSync as jest.Mock).mockImplementation((p: string, flags: string, mode?: number) => {
    const fd = real.openSync(p, flags, mode);
    opened.set(fd, p);
    log.push(`open ${p} ${flags}`);
    return fd;
  });
  (fs.fsyncSync as jest.Mock).mockImplementation((fd: number) => {
    log.push(`fsync ${opened.get(fd)}`);
    real.fsyncSync(fd);
  });
  (fs.closeSync as jest.Mock).mockImplementation((fd: number) => {
    log.push(`close ${opened.get(fd)}`);
    real.closeSync(fd);
  });
  (fs.renameSync as jest.Mock).mockImplementation((from: string, to: string) => {
    log.push(`rename ${from} ${to}`);
    real.renameSync(from, to);
  });
  return log;
}

describe("writeFileAtomicSync: the order of the durable steps", () => {
  test("write to a hidden sibling, fsync it, close it, rename it over the target, then fsync and close the folder", () => {
    const target = path.join(dir, "out.bin");
    const log = recordSync();
    writeFileAtomicSync(target, "data");
    const temp = log[0].split(" ")[1];
    expect(path.dirname(temp)).toBe(dir);
    expect(path.basename(temp)).toMatch(new RegExp(`^\\.out\\.bin\\.tmp-${process.pid}-[0-9a-f]{12}$`));
    expect(log).toEqual([`open ${temp} wx`, `fsync ${temp}`, `close ${temp}`, `rename ${temp} ${target}`, `open ${dir} r`, `fsync ${dir}`, `close ${dir}`]);
    expect(fs.readFileSync(target, "utf8")).toBe("data");
  });

  test("a folder that cannot be flushed (some file systems refuse) does not fail the write, and its descriptor is closed", () => {
    const target = path.join(dir, "out.bin");
    const log = recordSync();
    const realFsync = (fs.fsyncSync as jest.Mock).getMockImplementation()!;
    (fs.fsyncSync as jest.Mock).mockImplementation((fd: number) => {
      if (log[log.length - 1] === `open ${dir} r`) throw Object.assign(new Error("EINVAL: fsync of a folder"), { code: "EINVAL" });
      realFsync(fd);
    });
    writeFileAtomicSync(target, "data");
    expect(log.slice(-2)).toEqual([`open ${dir} r`, `close ${dir}`]);
    expect(fs.readFileSync(target, "utf8")).toBe("data");
  });

  test("short writes are resumed until every byte is written", () => {
    const target = path.join(dir, "out.bin");
    const sizes: number[] = [];
    (fs.writeSync as jest.Mock).mockImplementation((fd: number, buf: Uint8Array, offset: number, length: number) => {
      sizes.push(length);
      return real.writeSync(fd, buf, offset, Math.min(length, 3));
    });
    const bytes = Uint8Array.from({ length: 10 }, (_, i) => i + 1);
    writeFileAtomicSync(target, [bytes, Buffer.from("xy")]);
    expect([...fs.readFileSync(target)]).toEqual([...bytes, 120, 121]);
    expect(sizes).toEqual([10, 7, 4, 1, 2]);
  });
});

describe("writeFileAtomic (async): the same order, short writes resumed", () => {
  test("sync the temporary file, close it, rename, then sync and close the folder", async () => {
    const target = path.join(dir, "out.bin");
    const log: string[] = [];
    const sizes: number[] = [];
    const realOpen = fs.promises.open;
    const realRename = fs.promises.rename;
    jest.spyOn(fs.promises, "open").mockImplementation(async (p, flags, mode) => {
      const handle = await realOpen(p, flags, mode);
      log.push(`open ${p} ${flags}`);
      const write = handle.write.bind(handle) as (b: Uint8Array, o: number, l: number) => Promise<{ bytesWritten: number }>;
      handle.write = (async (b: Uint8Array, o: number, l: number) => {
        sizes.push(l);
        return write(b, o, Math.min(l, 3));
      }) as never;
      const sync = handle.sync.bind(handle);
      const close = handle.close.bind(handle);
      handle.sync = async () => {
        log.push(`sync ${p}`);
        return sync();
      };
      handle.close = async () => {
        log.push(`close ${p}`);
        return close();
      };
      return handle;
    });
    jest.spyOn(fs.promises, "rename").mockImplementation(async (from, to) => {
      log.push(`rename ${from} ${to}`);
      return realRename(from, to);
    });
    await writeFileAtomic(target, Buffer.from("data"));
    expect(sizes).toEqual([4, 1]); // a short write of 3 bytes is resumed
    const temp = log[0].split(" ")[1];
    expect(path.basename(temp)).toMatch(new RegExp(`^\\.out\\.bin\\.tmp-${process.pid}-[0-9a-f]{12}$`));
    expect(log).toEqual([`open ${temp} wx`, `sync ${temp}`, `close ${temp}`, `rename ${temp} ${target}`, `open ${dir} r`, `sync ${dir}`, `close ${dir}`]);
    expect(fs.readFileSync(target, "utf8")).toBe("data");
  });
});

describe("permission bits", () => {
  test.each([
    [-1, "-1"],
    [1.5, "1.5"],
    [0o10000, "4096"],
  ])("mode %p is refused, naming it", (mode, shown) => {
    expect(() => writeFileAtomicSync(path.join(dir, "f"), "x", { mode })).toThrow(
      new TypeError(`options.mode: expected permission bits between 0 and 0o7777, got ${shown}`),
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test("0 and 0o7777 are the bounds accepted", () => {
    writeFileAtomicSync(path.join(dir, "none"), "x", { mode: 0 });
    writeFileAtomicSync(path.join(dir, "all"), "x", { mode: 0o7777 });
    expect(fs.statSync(path.join(dir, "none")).mode & 0o7777).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual(["all", "none"]);
  });
});

describe("failures", () => {
  const openFds = () => real.readdirSync("/proc/self/fd").length;

  test("a source failing mid-write closes the temporary file's descriptor and removes the file", () => {
    const before = openFds();
    function* failing() {
      yield Buffer.from("abc");
      throw new Error("source broke");
    }
    expect(() => writeFileAtomicSync(path.join(dir, "f"), failing())).toThrow("source broke");
    expect(openFds()).toBe(before);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test.each([
    ["null", null, "null"],
    ["a plain object", {}, "an object"],
  ])("data that is %s is refused by both twins before anything is created", async (_name, data, shown) => {
    const message = new RegExp(`^data: expected a string, a Uint8Array or an iterable of Uint8Array chunks, got ${shown}`);
    expect(() => writeFileAtomicSync(path.join(dir, "f"), data as never)).toThrow(message);
    await expect(writeFileAtomic(path.join(dir, "f"), data as never)).rejects.toThrow(message);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test("a path that is not a string is named", () => {
    expect(() => writeFileAtomicSync(5 as never, "x")).toThrow(new TypeError("path: expected a non-empty string, got 5"));
  });

  test("a folder that is a file: ENOTDIR, with the code and the folder's path on the error", () => {
    const file = path.join(dir, "plain");
    real.writeFileSync(file, "");
    let thrown: NodeJS.ErrnoException | undefined;
    try {
      writeFileAtomicSync(path.join(file, "x"), "x");
    } catch (e) {
      thrown = e as NodeJS.ErrnoException;
    }
    expect(thrown).toMatchObject({ code: "ENOTDIR", path: file, message: `ENOTDIR: ${path.join(file, "x")}: ${file} is not a folder` });
  });
});
