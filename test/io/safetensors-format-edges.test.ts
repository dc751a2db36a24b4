/**
 * The safetensors header at its edges, with the bytes of each file built here by hand: every dtype
 * name of the format and its element width, the data order and metadata order the reference
 * writer uses, the limits at exactly their bound and one past it (header length, dimensions,
 * 2^53 - 1 elements), entries and offsets of every wrong kind by their exact message, long values
 * shortened in messages, a byte-order mark, and the metadata returned as an ordinary object.
 */
import * as fs from "fs";
import * as path from "path";
import { FormatError, Tensor, tensor } from "../../lib";
import { loadSafetensorsSync, readSafetensorsHeaderSync, saveSafetensorsSync } from "../../lib/io";
import { buildHeader } from "../../lib/io/safetensors-format";
import { messageOf } from "../helpers/errors";
import { f32, handBuilt, tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const entry = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });

/** Writes `bytes` as a file and returns the FormatError the header reader throws, checking the loader throws the same. */
function refusal(bytes: Buffer): { message: string; file: string } {
  const file = path.join(dir, "bad.safetensors");
  fs.writeFileSync(file, bytes);
  let caught: unknown;
  try {
    readSafetensorsHeaderSync(file);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(FormatError);
  const message = (caught as Error).message;
  expect(() => loadSafetensorsSync(file)).toThrow(message);
  return { message, file };
}

/** The problem part of the message for a file refused as `bytes`, after `<file>: not a valid safetensors file: `. */
function problemOf(bytes: Buffer): string {
  const { message, file } = refusal(bytes);
  const prefix = `${file}: not a valid safetensors file: `;
  expect(message.startsWith(prefix)).toBe(true);
  return message.slice(prefix.length);
}

// The format's dtypes as its specification lists them, with the bits per element and the
// torch-lora dtype (null where torch-lora has none).
const FORMAT_DTYPES: [string, number, string | null][] = [
  ["BOOL", 8, "bool"],
  ["F4", 4, null],
  ["F6_E2M3", 6, null],
  ["F6_E3M2", 6, null],
  ["U8", 8, "uint8"],
  ["I8", 8, null],
  ["F8_E5M2", 8, null],
  ["F8_E4M3", 8, null],
  ["F8_E8M0", 8, null],
  ["I16", 16, null],
  ["U16", 16, null],
  ["F16", 16, "float16"],
  ["BF16", 16, "bfloat16"],
  ["I32", 32, "int32"],
  ["U32", 32, null],
  ["F32", 32, "float32"],
  ["C64", 64, null],
  ["F64", 64, "float64"],
  ["I64", 64, "int64"],
  ["U64", 64, null],
];

describe("dtypes", () => {
  test("every dtype name of the format is read with its element width, and torch-lora's dtype where it has one", () => {
    // Eight elements of each: the byte count is the number of bits per element.
    const fields: Record<string, unknown> = {};
    let offset = 0;
    for (const [name, bits] of FORMAT_DTYPES) {
      fields[`t_${name}`] = entry(name, [8], offset, offset + bits);
      offset += bits;
    }
    const file = path.join(dir, "all.safetensors");
    fs.writeFileSync(file, handBuilt(JSON.stringify(fields), Buffer.alloc(offset)));
    const header = readSafetensorsHeaderSync(file);
    const byName = [...FORMAT_DTYPES].sort(([a], [b]) => (`t_${a}` < `t_${b}` ? -1 : 1));
    expect(header.tensors.map((t) => [t.name, t.formatDtype, t.dtype, t.byteLength, t.numel])).toEqual(
      byName.map(([name, bits, dtype]) => [`t_${name}`, name, dtype, bits, 8]),
    );
    expect(header.dataLength).toBe(offset);
  });

  test.each(FORMAT_DTYPES)("%s: one byte more than eight elements take is refused", (name, bits) => {
    expect(problemOf(handBuilt(JSON.stringify({ w: entry(name, [8], 0, bits + 1) }), Buffer.alloc(bits + 1)))).toBe(
      `tensor "w": shape [8] of ${name} needs ${bits} bytes, but data_offsets [0, ${bits + 1}] hold ${bits + 1}`,
    );
  });

  test("an unknown dtype is refused with the whole list of the format's names, in its order", () => {
    expect(problemOf(handBuilt(JSON.stringify({ w: entry("F33", [1], 0, 4) }), f32([1])))).toBe(
      'tensor "w": unknown dtype "F33"; the format knows ' + FORMAT_DTYPES.map(([n]) => n).join(", "),
    );
  });
});

describe("the writer's layout", () => {
  test("data by descending dtype position in the format's list, then by UTF-8 bytes of the name; metadata keys by UTF-8 bytes", () => {
    const file = path.join(dir, "order.safetensors");
    const t = {
      b: tensor([1], { dtype: "float32" }),
      a: tensor([2], { dtype: "float32" }),
      // U+FF61 sorts before U+1F600 in UTF-16 code units but after it in UTF-8 bytes.
      "\u{1F600}": tensor([3], { dtype: "float32" }),
      "\uff61": tensor([4], { dtype: "float32" }),
      flag: tensor([1], { dtype: "bool" }),
      byte: tensor([7], { dtype: "uint8" }),
      half: tensor([1], { dtype: "float16" }),
      brain: tensor([1], { dtype: "bfloat16" }),
      int: tensor([5], { dtype: "int32" }),
      double: tensor([6], { dtype: "float64" }),
      long: tensor([8], { dtype: "int64" }),
    };
    saveSafetensorsSync(file, t, { z: "1", "\u{1F600}": "2", a: "3", "\uff61": "4" });
    // I64, F64, F32 (a, b, U+FF61, U+1F600), I32, BF16, F16, U8, BOOL.
    const layout: [string, string, number][] = [
      ["long", "I64", 8],
      ["double", "F64", 8],
      ["a", "F32", 4],
      ["b", "F32", 4],
      ["\uff61", "F32", 4],
      ["\u{1F600}", "F32", 4],
      ["int", "I32", 4],
      ["brain", "BF16", 2],
      ["half", "F16", 2],
      ["byte", "U8", 1],
      ["flag", "BOOL", 1],
    ];
    let offset = 0;
    const entries = layout.map(([name, dtype, size]) => {
      const text = `"${name}":{"dtype":"${dtype}","shape":[1],"data_offsets":[${offset},${offset + size}]}`;
      offset += size;
      return text;
    });
    const json = `{"__metadata__":{"a":"3","z":"1","\uff61":"4","\u{1F600}":"2"},${entries.join(",")}}`;
    const jsonBytes = Buffer.from(json, "utf8");
    const padded = Math.ceil(jsonBytes.length / 8) * 8;
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(padded));
    const data = Buffer.concat([
      Buffer.from(new BigInt64Array([8n]).buffer),
      Buffer.from(new Float64Array([6]).buffer),
      f32([2, 1, 4, 3]),
      Buffer.from(new Int32Array([5]).buffer),
      Buffer.from([0x80, 0x3f]), // bfloat16 1.0
      Buffer.from([0x00, 0x3c]), // float16 1.0
      Buffer.from([7, 1]),
    ]);
    const expected = Buffer.concat([prefix, jsonBytes, Buffer.alloc(padded - jsonBytes.length, 0x20), data]);
    const written = fs.readFileSync(file);
    expect(written.subarray(8, 8 + padded).toString("utf8")).toBe(expected.subarray(8, 8 + padded).toString("utf8"));
    expect(written.equals(expected)).toBe(true);
  });

  test("a header of exactly 100,000,000 bytes is laid out; one byte more is refused by the writer and nothing is written", () => {
    // One zero-size float32 tensor whose name fills the header: the JSON around the name is fixed.
    const around = Buffer.byteLength('{"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}');
    const { header, order } = buildHeader([{ name: "n".repeat(100_000_000 - around), dtype: "float32", shape: [0], byteLength: 0 }], null);
    expect(header.length).toBe(100_000_008);
    expect(header.readBigUInt64LE(0)).toBe(100_000_000n);
    const tail = 'n":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}';
    expect(header.subarray(header.length - tail.length).toString()).toBe(tail);
    expect(order).toHaveLength(1);

    const file = path.join(dir, "big.safetensors");
    expect(messageOf(() => saveSafetensorsSync(file, { ["n".repeat(100_000_001 - around)]: tensor([]) }), RangeError)).toBe(
      "tensors: the header would take 100000008 bytes, more than the 100000000 a safetensors reader accepts",
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe("limits at their bound", () => {
  test("a header length prefix of exactly 100,000,000 is checked against the file size; 100,000,001 is refused as too large", () => {
    expect(problemOf(handBuilt("{}", Buffer.alloc(0), 100_000_000n))).toBe(
      "the header length prefix declares 100000000 bytes, but only 2 bytes follow it (truncated file?)",
    );
    expect(problemOf(handBuilt("{}", Buffer.alloc(0), 100_000_001n))).toBe(
      "the header length prefix declares 100000001 bytes, more than the 100000000 allowed",
    );
  });

  test("64 dimensions are read and loaded; 65 are refused", () => {
    const file = path.join(dir, "dims.safetensors");
    fs.writeFileSync(file, handBuilt(JSON.stringify({ w: entry("F32", new Array(64).fill(1), 0, 4) }), f32([2.5])));
    expect(readSafetensorsHeaderSync(file).tensors[0].shape).toEqual(new Array(64).fill(1));
    const w = loadSafetensorsSync(file).w;
    expect(w.shape).toHaveLength(64);
    expect(w.flatten().toList()).toEqual([2.5]);
    expect(problemOf(handBuilt(JSON.stringify({ w: entry("F32", new Array(65).fill(1), 0, 4) }), f32([2.5])))).toBe(
      'tensor "w": "shape" has 65 dimensions, more than the 64 supported',
    );
  });

  test("an empty tensor whose other dimensions multiply to 2^53 - 1 is read; to 2^53 is refused", () => {
    const file = path.join(dir, "span.safetensors");
    const largest = Number.MAX_SAFE_INTEGER; // 9007199254740991 = 6361 · 69431 · 20394401
    fs.writeFileSync(file, handBuilt(JSON.stringify({ e: entry("U8", [0, 6361, 69431, 20394401], 0, 0) })));
    const [info] = readSafetensorsHeaderSync(file).tensors;
    expect([info.shape, info.numel, info.byteLength]).toEqual([[0, 6361, 69431, 20394401], 0, 0]);
    expect(6361 * 69431 * 20394401).toBe(largest);
    expect(problemOf(handBuilt(JSON.stringify({ e: entry("U8", [0, 2 ** 52, 2], 0, 0) })))).toBe(
      'tensor "e": shape [0,4503599627370496,2]: its non-zero dimensions multiply to 9007199254740992, more than 2^53 - 1',
    );
  });
});

describe("entries of the wrong kind, by their exact message", () => {
  test.each([
    ["null", null, "null"],
    ["a number", 5, "5"],
    ["a string", "F32", '"F32"'],
    ["true", true, "true"],
  ])("an entry that is %s", (_what, value, shown) => {
    expect(problemOf(handBuilt(JSON.stringify({ a: value })))).toBe(`tensor "a": expected an object with dtype, shape and data_offsets, got ${shown}`);
  });

  test("values whose JSON passes 80 characters are shown as their first 77 and three dots", () => {
    // JSON of "x" * 78 is 80 characters: shown whole. "x" * 79 is 81: shortened.
    const at = "x".repeat(78);
    expect(problemOf(handBuilt(JSON.stringify({ a: at })))).toBe(`tensor "a": expected an object with dtype, shape and data_offsets, got "${at}"`);
    const past = "x".repeat(79);
    expect(problemOf(handBuilt(JSON.stringify({ a: past })))).toBe(
      `tensor "a": expected an object with dtype, shape and data_offsets, got "${"x".repeat(76)}...`,
    );
  });

  test.each([
    ["absent", undefined, "undefined"],
    ["null", null, "null"],
    ["a string", "0,4", '"0,4"'],
    ["an object", { begin: 0, end: 4 }, '{"begin":0,"end":4}'],
    ["three numbers", [0, 4, 8], "[0,4,8]"],
    ["one number", [0], "[0]"],
    ["a fractional begin", [0.5, 4], "[0.5,4]"],
    ["a string begin", ["0", 4], '["0",4]'],
    ["a negative end", [0, -4], "[0,-4]"],
    ["a fractional end", [0, 4.5], "[0,4.5]"],
    ["an end past 2^53", [0, 2 ** 53], "[0,9007199254740992]"],
  ])("data_offsets %s", (_what, offsets, shown) => {
    const w = offsets === undefined ? { dtype: "F32", shape: [1] } : { dtype: "F32", shape: [1], data_offsets: offsets };
    expect(problemOf(handBuilt(JSON.stringify({ w }), f32([1])))).toBe(
      `tensor "w": "data_offsets" must be [begin, end] with non-negative integers, got ${shown}`,
    );
  });

  test("a size mismatch names the whole shape and the bytes the offsets hold", () => {
    const header = JSON.stringify({ a: entry("U8", [4], 0, 4), b: entry("F32", [3, 2], 4, 12) });
    expect(problemOf(handBuilt(header, Buffer.alloc(12)))).toBe('tensor "b": shape [3, 2] of F32 needs 24 bytes, but data_offsets [4, 12] hold 8');
  });
});

describe("the header text", () => {
  test("a UTF-8 byte-order mark before the JSON is refused, as the reference's JSON parser refuses it", () => {
    const json = Buffer.from(JSON.stringify({ a: entry("F32", [1], 0, 4) }));
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json]);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(withBom.length));
    expect(problemOf(Buffer.concat([prefix, withBom, f32([1])]))).toMatch(/^the header is not valid JSON \(.+\)$/);
  });

  test("the metadata read back is an ordinary object: its entries can be changed and deleted", () => {
    const file = path.join(dir, "meta.safetensors");
    fs.writeFileSync(file, handBuilt(JSON.stringify({ __metadata__: { format: "pt", step: "3" } })));
    const metadata = readSafetensorsHeaderSync(file).metadata!;
    metadata.format = "np";
    delete metadata.step;
    expect(metadata).toEqual({ format: "np" });
    const loaded: Record<string, Tensor> = loadSafetensorsSync(file);
    expect(Object.keys(loaded)).toEqual([]);
  });
});
