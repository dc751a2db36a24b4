/**
 * lib/io/regular-file.ts in this process (non-regular-files.test.ts drives the public readers in a
 * child, to catch hangs): each kind of non-regular file is named, the check on the opened
 * descriptor catches a file swapped after the first check (and closes it), and the size bound
 * of a JSON text holds in both twins.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { FormatError } from "../../lib";
import { MAX_JSON_BYTES, openRegularFile, openRegularFileSync, readTextFile, readTextFileSync } from "../../lib/io/regular-file";
import { itUnless } from "../helpers/skip";
import { tempDir } from "./support/files";

/** statSync and promises.stat are mocks (calling the real ones) so that a test can lie about what a path is. */
jest.mock("fs", () => {
  const actual = jest.requireActual("fs");
  return {
    ...actual,
    statSync: jest.fn(actual.statSync),
    closeSync: jest.fn(actual.closeSync),
    promises: { ...actual.promises, stat: jest.fn(actual.promises.stat) },
  };
});
const real = jest.requireActual<typeof fs>("fs");

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => {
  (fs.statSync as jest.Mock).mockImplementation(real.statSync);
  (fs.closeSync as jest.Mock).mockImplementation(real.closeSync);
  (fs.promises.stat as jest.Mock).mockImplementation(real.promises.stat);
  cleanup();
});

/** Both twins refuse `file` with a FormatError whose message is exactly `message`. */
async function refusedBoth(file: string, message: string): Promise<void> {
  const thrown = (() => {
    try {
      readTextFileSync(file);
    } catch (e) {
      return e;
    }
  })();
  expect(thrown).toBeInstanceOf(FormatError);
  expect((thrown as Error).message).toBe(message);
  await expect(readTextFile(file)).rejects.toThrow(new FormatError(message));
}

describe("what a non-regular path is, in words", () => {
  test("a directory", async () => {
    await refusedBoth(dir, `${dir}: is a directory, not a regular file; only regular files are read`);
  });

  test("a character device", async () => {
    await refusedBoth("/dev/null", "/dev/null: is a character device, not a regular file; only regular files are read");
  });

  const hasMkfifo = spawnSync("mkfifo", ["--version"]).status === 0;
  itUnless(hasMkfifo ? null : "no mkfifo (coreutils)", "a named pipe, refused before it is opened (so nothing blocks)", async () => {
    const fifo = path.join(dir, "pipe");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    await refusedBoth(fifo, `${fifo}: is a named pipe (FIFO), not a regular file; only regular files are read`);
  });

  test("a socket", async () => {
    const sock = path.join(dir, "sock");
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      await refusedBoth(sock, `${sock}: is a socket, not a regular file; only regular files are read`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("a path swapped for a directory between the check and the open", () => {
  const fileStats = () => real.statSync(__filename);

  test("sync: refused on the opened descriptor, which is closed", () => {
    (fs.statSync as jest.Mock).mockImplementation((p: string) => (p === dir ? fileStats() : real.statSync(p)));
    const closed: number[] = [];
    (fs.closeSync as jest.Mock).mockImplementation((fd: number) => {
      closed.push(fd);
      real.closeSync(fd);
    });
    expect(() => openRegularFileSync(dir)).toThrow(new FormatError(`${dir}: is a directory, not a regular file; only regular files are read`));
    expect(closed).toHaveLength(1);
  });

  test("async: refused on the opened handle, which is closed", async () => {
    (fs.promises.stat as jest.Mock).mockImplementation(async (p: string) => (p === dir ? fileStats() : real.promises.stat(p)));
    const before = real.readdirSync("/proc/self/fd").length;
    await expect(openRegularFile(dir)).rejects.toThrow(new FormatError(`${dir}: is a directory, not a regular file; only regular files are read`));
    expect(real.readdirSync("/proc/self/fd").length).toBe(before);
  });
});

describe("the size bound of a JSON text", () => {
  test("MAX_JSON_BYTES is read; one byte more is refused by both twins", async () => {
    const file = path.join(dir, "big.json");
    real.writeFileSync(file, "");
    real.truncateSync(file, MAX_JSON_BYTES); // sparse
    expect(readTextFileSync(file)).toHaveLength(MAX_JSON_BYTES);
    expect(await readTextFile(file)).toHaveLength(MAX_JSON_BYTES);
    real.truncateSync(file, MAX_JSON_BYTES + 1);
    await refusedBoth(file, `${file}: ${MAX_JSON_BYTES + 1} bytes, more than the ${MAX_JSON_BYTES} a JSON config may have`);
  });

  test("a regular file is read as UTF-8 and its descriptor closed", async () => {
    const file = path.join(dir, "ok.json");
    real.writeFileSync(file, '{"é":1}');
    const before = real.readdirSync("/proc/self/fd").length;
    expect(readTextFileSync(file)).toBe('{"é":1}');
    expect(await readTextFile(file)).toBe('{"é":1}');
    expect(real.readdirSync("/proc/self/fd").length).toBe(before);
  });
});
