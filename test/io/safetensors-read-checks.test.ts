/**
 * The safetensors readers beyond valid and malformed files: argument checks, short reads resumed
 * at the right offset, a file that ends while it is read (named with what was being read), the
 * descriptor closed on every path, an 8-byte file, and the message for a dtype that cannot be
 * loaded. Reads are observed through a mock that calls the real fs.readSync (sync readers) or the
 * real FileHandle read (async readers).
 */
import * as fs from "fs";
import * as path from "path";
import { FormatError, tensor } from "../../lib";
import { loadSafetensors, loadSafetensorsSync, readSafetensorsHeader, readSafetensorsHeaderSync, saveSafetensorsSync } from "../../lib/io";
import { f32, handBuilt, tempDir } from "./support/files";

jest.mock("fs", () => {
  const actual = jest.requireActual("fs");
  return { ...actual, readSync: jest.fn(actual.readSync) };
});
const real = jest.requireActual<typeof fs>("fs");

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => {
  (fs.readSync as jest.Mock).mockImplementation(real.readSync as never);
  handleRead?.mockRestore();
  handleRead = undefined;
  cleanup();
});

/** A read of `length` bytes into `buf` at `offset`, from byte `position` of the file: returns how many it read. */
type Read = (real: (length: number) => Promise<number>, length: number, position: number) => Promise<number>;
let handleRead: jest.SpyInstance | undefined;

/**
 * Routes every FileHandle read (what the async readers use) through `read`, which may call the real
 * read with a smaller length. The FileHandle class is not exported: its prototype is taken from a
 * handle.
 */
async function mockHandleRead(read: Read): Promise<void> {
  const handle = await real.promises.open(__filename, "r");
  await handle.close();
  const proto = Object.getPrototypeOf(handle) as { read: (...args: unknown[]) => Promise<{ bytesRead: number; buffer: Buffer }> };
  const original = proto.read;
  handleRead = jest.spyOn(proto, "read").mockImplementation(async function (this: unknown, buf: unknown, offset: unknown, length: unknown, position: unknown) {
    const bytesRead = await read(async (n) => (await original.call(this, buf, offset, n, position)).bytesRead, length as number, position as number);
    return { bytesRead, buffer: buf as Buffer };
  });
}

const openFds = () => real.readdirSync("/proc/self/fd").length;

/** A file holding w = [1, 2, 3] (float32) and b = [4] (float32). */
function sample(): string {
  const file = path.join(dir, "s.safetensors");
  saveSafetensorsSync(file, { w: tensor([1, 2, 3]), b: tensor([4]) });
  return file;
}

describe("arguments", () => {
  test("a path that is not a string, and options that are not an object, are named", async () => {
    expect(() => loadSafetensorsSync(5 as never)).toThrow(new TypeError("path: expected a non-empty string, got 5"));
    const file = sample();
    expect(() => loadSafetensorsSync(file, null as never)).toThrow(new TypeError("options: expected an options object, got null"));
    expect(() => loadSafetensorsSync(file, "cpu" as never)).toThrow(new TypeError('options: expected an options object, got the string "cpu"'));
    await expect(loadSafetensors(file, 3 as never)).rejects.toThrow(new TypeError("options: expected an options object, got 3"));
  });
});

describe("reads", () => {
  test("short reads are resumed at the right offset", () => {
    const file = sample();
    const lengths: number[] = [];
    (fs.readSync as jest.Mock).mockImplementation((fd: number, buf: Buffer, offset: number, length: number, position: number) => {
      lengths.push(length);
      return real.readSync(fd, buf, offset, Math.min(length, 3), position);
    });
    const out = loadSafetensorsSync(file);
    expect(out.w.toList()).toEqual([1, 2, 3]);
    expect(out.b.toList()).toEqual([4]);
    expect(lengths.slice(0, 3)).toEqual([8, 5, 2]);
  });

  test.each([
    [0, "the header length", 0],
    [1, "the header", 8],
    [2, 'tensor "b"', -1],
  ])("a file that ends during read %i names what was being read (%s)", (failing, what, at) => {
    const file = sample();
    const headerLength = Number(real.readFileSync(file).readBigUInt64LE(0));
    let calls = 0;
    (fs.readSync as jest.Mock).mockImplementation((fd: number, buf: Buffer, offset: number, length: number, position: number) =>
      calls++ === failing ? 0 : real.readSync(fd, buf, offset, length, position),
    );
    const before = openFds();
    const byte = at >= 0 ? at : 8 + headerLength;
    expect(() => loadSafetensorsSync(file)).toThrow(
      new FormatError(`${file}: not a valid safetensors file: the file ended at byte ${byte} while reading ${what} (it changed while being read?)`),
    );
    expect(openFds()).toBe(before);
  });

  test("an 8-byte file is read for its header length", () => {
    const file = path.join(dir, "eight.safetensors");
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(2n);
    real.writeFileSync(file, prefix);
    expect(() => readSafetensorsHeaderSync(file)).toThrow(FormatError);
    expect(() => readSafetensorsHeaderSync(file)).toThrow(/the header length prefix declares 2 bytes, but only 0 bytes follow it/);
  });
});

describe("reads of the async readers", () => {
  test("short reads are resumed at the right offset", async () => {
    const file = sample();
    const lengths: number[] = [];
    await mockHandleRead((read, length) => (lengths.push(length), read(Math.min(length, 3))));
    const out = await loadSafetensors(file);
    expect(out.w.toList()).toEqual([1, 2, 3]);
    expect(out.b.toList()).toEqual([4]);
    expect(lengths.slice(0, 3)).toEqual([8, 5, 2]);
    // The header alone: the same reads, resumed the same way.
    lengths.length = 0;
    expect((await readSafetensorsHeader(file)).tensors.map((t) => t.name)).toEqual(["b", "w"]);
    expect(lengths.slice(0, 3)).toEqual([8, 5, 2]);
  });

  test.each([
    [0, "the header length", 0],
    [1, "the header", 8],
    [2, 'tensor "b"', -1],
  ])("a file that ends during read %i names what was being read (%s), and the handle is closed", async (failing, what, at) => {
    const file = sample();
    const headerLength = Number(real.readFileSync(file).readBigUInt64LE(0));
    const byte = at >= 0 ? at : 8 + headerLength;
    const message = `${file}: not a valid safetensors file: the file ended at byte ${byte} while reading ${what} (it changed while being read?)`;
    let calls = 0;
    await mockHandleRead((read, length) => (calls++ === failing ? Promise.resolve(0) : read(length)));
    const before = openFds();
    await expect(loadSafetensors(file)).rejects.toThrow(new FormatError(message));
    expect(openFds()).toBe(before);
    if (what !== 'tensor "b"') {
      calls = 0;
      await expect(readSafetensorsHeader(file)).rejects.toThrow(new FormatError(message));
      expect(openFds()).toBe(before);
    }
  });

  test("an 8-byte file is read for its header length", async () => {
    const file = path.join(dir, "eight.safetensors");
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(2n);
    real.writeFileSync(file, prefix);
    await expect(readSafetensorsHeader(file)).rejects.toThrow(FormatError);
    await expect(readSafetensorsHeader(file)).rejects.toThrow(/the header length prefix declares 2 bytes, but only 0 bytes follow it/);
  });
});

describe("a file that ends after a short read names the byte where it ended", () => {
  // Reads of at most 3 bytes: the 8-byte length prefix takes reads at bytes 0, 3 and 6; the third
  // finds the end, at byte 6 = 0 + the 6 bytes already read.
  const message = (file: string) =>
    `${file}: not a valid safetensors file: the file ended at byte 6 while reading the header length (it changed while being read?)`;

  test("sync", () => {
    const file = sample();
    const positions: number[] = [];
    (fs.readSync as jest.Mock).mockImplementation((fd: number, buf: Buffer, offset: number, length: number, position: number) => {
      positions.push(position);
      return positions.length === 3 ? 0 : real.readSync(fd, buf, offset, Math.min(length, 3), position);
    });
    expect(() => readSafetensorsHeaderSync(file)).toThrow(new FormatError(message(file)));
    expect(positions).toEqual([0, 3, 6]);
  });

  test("async", async () => {
    const file = sample();
    const positions: number[] = [];
    await mockHandleRead((read, length, position) => (positions.push(position), positions.length === 3 ? Promise.resolve(0) : read(Math.min(length, 3))));
    await expect(readSafetensorsHeader(file)).rejects.toThrow(new FormatError(message(file)));
    expect(positions).toEqual([0, 3, 6]);
  });
});

describe("descriptors are closed on every path", () => {
  test("success and failure, sync and async, header and tensors", async () => {
    const file = sample();
    const bad = path.join(dir, "bad.safetensors");
    real.writeFileSync(bad, handBuilt('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', f32([1])));
    const before = openFds();
    readSafetensorsHeaderSync(file);
    await readSafetensorsHeader(file);
    loadSafetensorsSync(file);
    await loadSafetensors(file);
    expect(() => readSafetensorsHeaderSync(bad)).toThrow(FormatError);
    await expect(readSafetensorsHeader(bad)).rejects.toThrow(FormatError);
    expect(() => loadSafetensorsSync(bad)).toThrow(FormatError);
    await expect(loadSafetensors(bad)).rejects.toThrow(FormatError);
    expect(openFds()).toBe(before);
  });
});

test("a dtype the format knows but torch-lora cannot load is named with the supported list", () => {
  const file = path.join(dir, "f8.safetensors");
  real.writeFileSync(file, handBuilt('{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}', new Uint8Array(2)));
  expect(() => loadSafetensorsSync(file)).toThrow(
    new FormatError(`${file}: tensor "w" has dtype F8_E4M3, which torch-lora cannot load (supported: F32, F64, F16, BF16, I64, I32, U8, BOOL)`),
  );
});
