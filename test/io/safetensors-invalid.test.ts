import * as fs from "fs";
import * as path from "path";
import { FormatError } from "../../lib";
import { loadSafetensors, loadSafetensorsSync, readSafetensorsHeaderSync, saveSafetensorsSync } from "../../lib/io";
import { tensor } from "../../lib";
import { f32, handBuilt, tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const entry = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });
const header = (obj: unknown) => JSON.stringify(obj);

// Each case: a file's bytes and the message the FormatError must carry (the file name is checked separately).
const cases: [string, () => Buffer, RegExp][] = [
  ["an empty file", () => Buffer.alloc(0), /has 0 bytes, fewer than the 8-byte header length prefix/],
  ["a file shorter than the prefix", () => Buffer.from([5, 0, 0]), /has 3 bytes, fewer than the 8-byte/],
  ["a header length past the end of the file", () => handBuilt('{"a":1}', Buffer.alloc(0), 500n), /declares 500 bytes, but only 7 bytes follow it/],
  ["a huge declared header length", () => handBuilt("{}", Buffer.alloc(0), 1n << 62n), /declares 4611686018427387904 bytes, more than the 100000000 allowed/],
  ["the largest u64 header length", () => handBuilt("{}", Buffer.alloc(0), (1n << 64n) - 1n), /more than the 100000000 allowed/],
  ["a truncated header", () => handBuilt(header({ a: entry("F32", [2], 0, 8) }), f32([1, 2])).subarray(0, 20), /declares 54 bytes, but only 12 bytes follow/],
  [
    "truncated data",
    () => handBuilt(header({ a: entry("F32", [2], 0, 8) }), f32([1, 2])).subarray(0, 65),
    /tensor "a": data_offsets \[0, 8\] reach past the end of the 3-byte data area/,
  ],
  ["invalid UTF-8 in the header", () => handBuilt('{"\xff":1}'.replace("\xff", "X")).fill(0xff, 10, 11), /the header is not valid UTF-8/],
  ["invalid JSON", () => handBuilt('{"a": {"dtype": "F32",'), /the header is not valid JSON/],
  ["JSON that is an array", () => handBuilt("[1, 2]"), /the header must be a JSON object, got an array/],
  ["JSON that is a number", () => handBuilt("42      "), /the header must be a JSON object, got number/],
  ["JSON null", () => handBuilt("null"), /the header must be a JSON object, got null/],
  ["an entry that is not an object", () => handBuilt(header({ a: [1, 2] })), /tensor "a": expected an object with dtype, shape and data_offsets, got \[1,2\]/],
  ["an unknown dtype", () => handBuilt(header({ w: entry("F33", [1], 0, 4) }), f32([1])), /tensor "w": unknown dtype "F33"/],
  ["a lowercase torch dtype name", () => handBuilt(header({ w: entry("float32", [1], 0, 4) }), f32([1])), /tensor "w": unknown dtype "float32"/],
  ["a missing dtype", () => handBuilt(header({ w: { shape: [1], data_offsets: [0, 4] } }), f32([1])), /tensor "w": "dtype" must be a string, got undefined/],
  [
    "a negative dimension",
    () => handBuilt(header({ w: entry("F32", [-1], 0, 4) }), f32([1])),
    /tensor "w": "shape"\[0\] must be a non-negative integer, got -1/,
  ],
  ["a fractional dimension", () => handBuilt(header({ w: entry("F32", [1.5], 0, 4) }), f32([1])), /"shape"\[0\] must be a non-negative integer, got 1.5/],
  [
    "a dimension beyond 2^53",
    () => handBuilt(header({ w: entry("F32", [1e20], 0, 4) }), f32([1])),
    /"shape"\[0\] must be a non-negative integer, got 100000000000000000000/,
  ],
  ["a string shape", () => handBuilt(header({ w: entry("F32", "2" as never, 0, 4) }), f32([1])), /"shape" must be an array/],
  [
    "too many dimensions",
    () => handBuilt(header({ w: entry("F32", new Array(65).fill(1), 0, 4) }), f32([1])),
    /"shape" has 65 dimensions, more than the 64 supported/,
  ],
  [
    "offsets that are not a pair",
    () => handBuilt(header({ w: { dtype: "F32", shape: [1], data_offsets: [0] } }), f32([1])),
    /"data_offsets" must be \[begin, end\]/,
  ],
  [
    "negative offsets",
    () => handBuilt(header({ w: entry("F32", [0], -4, -4) })),
    /"data_offsets" must be \[begin, end\] with non-negative integers, got \[-4,-4\]/,
  ],
  ["end before begin", () => handBuilt(header({ w: entry("F32", [1], 4, 0) }), f32([1])), /tensor "w": "data_offsets" \[4, 0\] ends before it begins/],
  [
    "a size mismatch",
    () => handBuilt(header({ w: entry("F32", [3], 0, 8) }), f32([1, 2])),
    /tensor "w": shape \[3\] of F32 needs 12 bytes, but data_offsets \[0, 8\] hold 8/,
  ],
  [
    "a shape whose product overflows",
    () => handBuilt(header({ w: entry("U8", [2 ** 52, 2 ** 52, 2 ** 52], 0, 4) }), f32([1])),
    /needs 91343852333181432387730302044767688728495783936 bytes/,
  ],
  [
    "overlapping offsets",
    () => handBuilt(header({ a: entry("F32", [2], 0, 8), b: entry("F32", [2], 4, 12) }), f32([1, 2, 3])),
    /tensor "b": data_offsets \[4, 12\] overlap tensor "a", which ends at 8/,
  ],
  [
    "two tensors on the same bytes",
    () => handBuilt(header({ a: entry("F32", [2], 0, 8), b: entry("F32", [2], 0, 8) }), f32([1, 2])),
    /overlap tensor "a", which ends at 8/,
  ],
  // Boundaries, one byte off: a check off by one lets each of these load.
  [
    "a 1-byte overlap",
    () => handBuilt(header({ a: entry("U8", [8], 0, 8), b: entry("U8", [4], 7, 11) }), Buffer.alloc(11)),
    /tensor "b": data_offsets \[7, 11\] overlap tensor "a", which ends at 8/,
  ],
  [
    "end = data length + 1",
    () => handBuilt(header({ a: entry("U8", [4], 0, 4), b: entry("U8", [5], 4, 9) }), Buffer.alloc(8)),
    /tensor "b": data_offsets \[4, 9\] reach past the end of the 8-byte data area/,
  ],
  [
    "a lone tensor ending one byte past the data",
    () => handBuilt(header({ a: entry("F32", [2], 1, 9) }), f32([1, 2])),
    /tensor "a": data_offsets \[1, 9\] reach past the end of the 8-byte data area/,
  ],
  [
    "a 1-byte gap",
    () => handBuilt(header({ a: entry("U8", [4], 0, 4), b: entry("U8", [3], 5, 8) }), Buffer.alloc(8)),
    /tensor "b": data_offsets \[5, 8\] leave bytes \[4, 5\) of the data area unused/,
  ],
  [
    "one trailing byte",
    () => handBuilt(header({ a: entry("U8", [4], 0, 4) }), Buffer.alloc(5)),
    /cover 4 bytes of the data area, but it has 5 \(1 bytes belong to no tensor\)/,
  ],
  [
    "a zero-size tensor one byte past the end",
    () => handBuilt(header({ a: entry("F32", [2], 0, 8), z: entry("F32", [0], 9, 9) }), f32([1, 2])),
    /tensor "z": data_offsets \[9, 9\] reach past the end of the 8-byte data area/,
  ],
  [
    "a zero-size tensor inside another",
    () => handBuilt(header({ a: entry("F32", [2], 0, 8), z: entry("F32", [0], 4, 4) }), f32([1, 2])),
    /tensor "z": data_offsets \[4, 4\] overlap tensor "a", which ends at 8/,
  ],
  [
    "a zero-size tensor one byte after the previous one",
    () => handBuilt(header({ a: entry("U8", [4], 0, 4), z: entry("U8", [0], 5, 5), b: entry("U8", [3], 5, 8) }), Buffer.alloc(8)),
    /leave bytes \[4, 5\) of the data area unused/,
  ],
  [
    "out-of-range offsets",
    () => handBuilt(header({ a: entry("F32", [2], 8, 16) }), f32([1, 2])),
    /tensor "a": data_offsets \[8, 16\] reach past the end of the 8-byte data area/,
  ],
  [
    "a gap before a tensor",
    () => handBuilt(header({ a: entry("F32", [1], 4, 8) }), f32([1, 2])),
    /tensor "a": data_offsets \[4, 8\] leave bytes \[0, 4\) of the data area unused/,
  ],
  [
    "trailing bytes no tensor owns",
    () => handBuilt(header({ a: entry("F32", [1], 0, 4) }), f32([1, 2])),
    /the tensors cover 4 bytes of the data area, but it has 8 \(4 bytes belong to no tensor\)/,
  ],
  ["data but no tensors", () => handBuilt("{}", Buffer.alloc(3)), /cover 0 bytes of the data area, but it has 3/],
  ["metadata that is not an object", () => handBuilt(header({ __metadata__: "pt" })), /"__metadata__" must be an object mapping strings to strings, got "pt"/],
  ["a non-string metadata value", () => handBuilt(header({ __metadata__: { epoch: 3 } })), /"__metadata__" entry "epoch" must be a string, got 3/],
  ["a nested metadata value", () => handBuilt(header({ __metadata__: { a: { b: "c" } } })), /"__metadata__" entry "a" must be a string, got \{"b":"c"\}/],
  [
    "sub-byte elements that do not fill bytes",
    () => handBuilt(header({ q: entry("F4", [3], 0, 1) }), Buffer.alloc(1)),
    /tensor "q": 3 elements of F4 do not fill a whole number of bytes/,
  ],
];

describe("malformed safetensors files are FormatErrors naming the file and the problem", () => {
  test.each(cases)("%s", async (_label, bytes, message) => {
    const file = path.join(dir, "bad.safetensors");
    fs.writeFileSync(file, bytes());
    for (const attempt of [() => loadSafetensorsSync(file), () => readSafetensorsHeaderSync(file)]) {
      let caught: unknown;
      try {
        attempt();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(FormatError);
      expect((caught as Error).message).toMatch(message);
      expect((caught as Error).message.startsWith(`${file}: not a valid safetensors file: `)).toBe(true);
    }
    await expect(loadSafetensors(file)).rejects.toThrow(FormatError);
    await expect(loadSafetensors(file)).rejects.toThrow(message);
  });
});

describe("files valid in the format", () => {
  test("metadata null counts as no metadata; unknown entry fields are ignored, as the reference does", () => {
    const file = path.join(dir, "ok.safetensors");
    fs.writeFileSync(file, handBuilt(header({ __metadata__: null, a: { ...entry("F32", [2], 0, 8), extra: true } }), f32([1.5, -2])));
    expect(readSafetensorsHeaderSync(file).metadata).toBeNull();
    expect(loadSafetensorsSync(file).a.toList()).toEqual([1.5, -2]);
  });

  test("zero-size tensors at the boundaries: at offset 0, between two tensors, at the very end, and in an empty data area", () => {
    const file = path.join(dir, "zeros.safetensors");
    const cases: [string, Buffer, Record<string, number[]>][] = [
      ["first", handBuilt(header({ z: entry("F32", [0], 0, 0), a: entry("F32", [2], 0, 8) }), f32([1, 2])), { a: [1, 2], z: [] }],
      [
        "between",
        handBuilt(header({ a: entry("F32", [1], 0, 4), z: entry("F32", [0, 3], 4, 4), b: entry("F32", [1], 4, 8) }), f32([1, 2])),
        { a: [1], b: [2], z: [] },
      ],
      ["last", handBuilt(header({ a: entry("F32", [2], 0, 8), z: entry("F32", [0], 8, 8) }), f32([1, 2])), { a: [1, 2], z: [] }],
      ["alone", handBuilt(header({ z: entry("F32", [0], 0, 0), y: entry("U8", [2, 0], 0, 0) })), { y: [], z: [] }],
    ];
    for (const [label, bytes, expected] of cases) {
      fs.writeFileSync(file, bytes);
      const loaded = loadSafetensorsSync(file);
      const values = Object.fromEntries(Object.entries(loaded).map(([k, t]) => [k, (t.toList() as number[]).flat(2)]));
      expect([label, values]).toEqual([label, expected]);
    }
  });

  test("JSON whitespace around the header object is accepted, as the reference reader does", () => {
    const file = path.join(dir, "ws.safetensors");
    fs.writeFileSync(file, handBuilt(`\t\n ${header({ a: entry("F32", [1], 0, 4) })}\r\n `, f32([7])));
    expect(loadSafetensorsSync(file).a.toList()).toEqual([7]);
  });

  test("entries listed out of offset order load, a zero-size tensor may share its begin with the next, and names come back in byte order", () => {
    const file = path.join(dir, "order.safetensors");
    // Header order: c, a, z, b; offset order: a [0, 4), z [4, 4), b [4, 8) (z's tie with b is broken by end), c [8, 12).
    const h = header({ c: entry("F32", [1], 8, 12), a: entry("F32", [1], 0, 4), b: entry("F32", [1], 4, 8), z: entry("F32", [0], 4, 4) });
    fs.writeFileSync(file, handBuilt(h, f32([1, 2, 3])));
    const loaded = loadSafetensorsSync(file);
    expect(Object.fromEntries(Object.entries(loaded).map(([k, t]) => [k, t.toList()]))).toEqual({ a: [1], b: [2], c: [3], z: [] });
    expect(readSafetensorsHeaderSync(file).tensors.map((t) => [t.name, t.dataOffsets])).toEqual([
      ["a", [0, 4]],
      ["b", [4, 8]],
      ["c", [8, 12]],
      ["z", [4, 4]],
    ]);
  });

  test("a dtype valid in the format but unsupported is listed by the header reader and refused by the loader", () => {
    const file = path.join(dir, "i8.safetensors");
    fs.writeFileSync(file, handBuilt(header({ q: entry("I8", [2], 0, 2), w: entry("F32", [1], 2, 6) }), Buffer.from([1, 2, 0, 0, 128, 63])));
    const h = readSafetensorsHeaderSync(file);
    expect(h.tensors.map((t) => [t.name, t.formatDtype, t.dtype])).toEqual([
      ["q", "I8", null],
      ["w", "F32", "float32"],
    ]);
    expect(() => loadSafetensorsSync(file)).toThrow(/tensor "q" has dtype I8, which torch-lora cannot load/);
    expect(() => loadSafetensorsSync(file)).toThrow(FormatError);
  });

  test("a header longer than 100,000,000 bytes is refused at save time, so every reader could load the file", () => {
    // 1001 names of 100,000 characters: the header passes 100 MB while the data stays empty.
    const t = tensor([]);
    const many: Record<string, typeof t> = {};
    const pad = "x".repeat(100_000);
    for (let i = 0; i <= 1000; i++) many[`${i}${pad}`] = t;
    const file = path.join(dir, "big.safetensors");
    expect(() => saveSafetensorsSync(file, many)).toThrow(/the header would take \d+ bytes, more than the 100000000/);
    expect(fs.existsSync(file)).toBe(false);
  });
});
