import * as fs from "fs";
import * as path from "path";
import { randomBytes } from "crypto";
import { Tensor, tensor, zeros } from "../../lib";
import { DTYPES, Dtype, dtypeSize } from "../../lib/dtype";
import { loadSafetensors, loadSafetensorsSync, readSafetensorsHeader, loadSafetensorsMetadata, saveSafetensors, saveSafetensorsSync } from "../../lib/io";
import { tempDir } from "./support/files";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

/** A tensor filled with random raw bytes (every bit pattern, NaN payloads included); bool gets 0/1. */
function randomTensor(shape: number[], dtype: Dtype): Tensor {
  const n = shape.reduce((a, b) => a * b, 1) * dtypeSize(dtype);
  const bytes = randomBytes(n);
  if (dtype === "bool") for (let i = 0; i < n; i++) bytes[i] &= 1;
  return Tensor.fromBytes(bytes, shape, dtype);
}

describe("safetensors round trip", () => {
  test.each(DTYPES.map((d) => [d]))("%s: bytes, shape and dtype survive save → load bit for bit", async (dtype) => {
    const t = randomTensor([3, 5, 2], dtype);
    const scalar = randomTensor([], dtype);
    const empty = randomTensor([0, 4], dtype);
    const file = path.join(dir, `${dtype}.safetensors`);
    await saveSafetensors(file, { t, scalar, empty }, { dtype, note: "ünïcode ✓" });
    for (const loaded of [await loadSafetensors(file), loadSafetensorsSync(file)]) {
      expect(Object.keys(loaded)).toEqual(["empty", "scalar", "t"]);
      for (const [name, orig] of Object.entries({ t, scalar, empty })) {
        expect(loaded[name].dtype).toBe(dtype);
        expect(loaded[name].shape).toEqual(orig.shape);
        expect(Buffer.compare(loaded[name].toBytes(), orig.toBytes())).toBe(0);
      }
    }
    expect(await loadSafetensorsMetadata(file)).toEqual({ dtype, note: "ünïcode ✓" });
  });

  test("the synchronous writer produces the same bytes as the asynchronous one", async () => {
    const tensors = { w: randomTensor([4, 4], "float32"), ids: randomTensor([7], "int64"), m: randomTensor([3], "bool") };
    await saveSafetensors(path.join(dir, "a.safetensors"), tensors, { k: "v" });
    saveSafetensorsSync(path.join(dir, "b.safetensors"), tensors, { k: "v" });
    expect(fs.readFileSync(path.join(dir, "a.safetensors")).equals(fs.readFileSync(path.join(dir, "b.safetensors")))).toBe(true);
  });

  test("the file layout is the reference's: exact bytes for one float32 tensor", () => {
    const file = path.join(dir, "one.safetensors");
    saveSafetensorsSync(file, { "attn.0": tensor([0, 1, 2, 3, 4, 5], { shape: [1, 2, 3] }) });
    // Hand-assembled expectation: the JSON is 64 bytes, already a multiple of 8, so no padding.
    const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(json.length).toBe(64);
    const prefix = Buffer.from([64, 0, 0, 0, 0, 0, 0, 0]);
    const data = Buffer.from(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);
    expect(fs.readFileSync(file).equals(Buffer.concat([prefix, Buffer.from(json), data]))).toBe(true);
  });

  test("empty dict and metadata-only files are padded with spaces to 8 bytes", () => {
    const a = path.join(dir, "empty.safetensors");
    saveSafetensorsSync(a, {});
    expect([...fs.readFileSync(a)]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from("{}      ")]);
    const b = path.join(dir, "meta.safetensors");
    saveSafetensorsSync(b, {}, { framework: "pt" });
    const json = '{"__metadata__":{"framework":"pt"}}';
    expect(json.length).toBe(35);
    expect(fs.readFileSync(b).equals(Buffer.concat([Buffer.from([40, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(json + "     ")]))).toBe(true);
  });

  test("data is ordered by descending alignment then name, every tensor aligned to its element size", async () => {
    const names: Record<string, Dtype> = {
      b_bool: "bool",
      a_u8: "uint8",
      z_f16: "float16",
      y_bf16: "bfloat16",
      c_i32: "int32",
      d_f32: "float32",
      x_f64: "float64",
      e_i64: "int64",
      a_f32: "float32",
    };
    const tensors: Record<string, Tensor> = {};
    for (const [n, d] of Object.entries(names)) tensors[n] = randomTensor([3], d);
    const file = path.join(dir, "order.safetensors");
    await saveSafetensors(file, tensors);
    const header = await readSafetensorsHeader(file);
    expect(header.headerLength % 8).toBe(0);
    const byOffset = header.tensors
      .slice()
      .sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0])
      .map((t) => t.name);
    expect(byOffset).toEqual(["e_i64", "x_f64", "a_f32", "d_f32", "c_i32", "y_bf16", "z_f16", "a_u8", "b_bool"]);
    for (const t of header.tensors) expect((header.dataStart + t.dataOffsets[0]) % dtypeSize(t.dtype!)).toBe(0);
    // The JSON keys appear in data order (metadata would come first).
    const raw = fs
      .readFileSync(file)
      .subarray(8, 8 + header.headerLength)
      .toString();
    const positions = byOffset.map((n) => raw.indexOf(`"${n}"`));
    expect(positions).toEqual(positions.slice().sort((a, b) => a - b));
  });

  test("header info reports names, dtypes, shapes, sizes and metadata", async () => {
    const file = path.join(dir, "info.safetensors");
    await saveSafetensors(file, { w: zeros([2, 3]), ids: zeros([4], { dtype: "int64" }) }, { format: "pt" });
    const h = await readSafetensorsHeader(file);
    expect(h.metadata).toEqual({ format: "pt" });
    expect(h.tensors.map((t) => [t.name, t.formatDtype, t.dtype, t.shape, t.numel, t.byteLength, t.dataOffsets])).toEqual([
      ["ids", "I64", "int64", [4], 4, 32, [0, 32]],
      ["w", "F32", "float32", [2, 3], 6, 24, [32, 56]],
    ]);
    expect(h.fileSize).toBe(fs.statSync(file).size);
    expect(h.dataStart).toBe(8 + h.headerLength);
    expect(h.dataLength).toBe(56);
    expect(h.fileSize).toBe(h.dataStart + 56);
  });

  test("a Map works as input; unusual names (__proto__, unicode, empty) survive", async () => {
    const file = path.join(dir, "names.safetensors");
    const m = new Map<string, Tensor>([
      ["__proto__", tensor([1, 2])],
      ["", tensor([3])],
      ["ü.λ.😀", tensor([4, 5, 6])],
      ['quote"back\\slash\n', tensor([7])],
    ]);
    await saveSafetensors(file, m, { __proto__x: "1", "": "" });
    const loaded = await loadSafetensors(file);
    expect(Object.getPrototypeOf(loaded)).toBe(Object.prototype);
    expect(Object.keys(loaded).sort()).toEqual([...m.keys()].sort());
    for (const [k, v] of m) expect(loaded[k].toList()).toEqual(v.toList());
    expect(await loadSafetensorsMetadata(file)).toEqual({ __proto__x: "1", "": "" });
  });

  test("non-contiguous and gradient-tracking tensors are saved by value", async () => {
    const base = tensor(
      [
        [1, 2, 3],
        [4, 5, 6],
      ],
      { requiresGrad: true },
    );
    const file = path.join(dir, "t.safetensors");
    await saveSafetensors(file, { t: base.t(), g: base });
    const loaded = await loadSafetensors(file);
    expect(loaded.t.shape).toEqual([3, 2]);
    expect(loaded.t.toList()).toEqual([1, 4, 2, 5, 3, 6]);
    expect(loaded.g.requiresGrad).toBe(false);
  });

  test("files without metadata report null", async () => {
    const file = path.join(dir, "nometa.safetensors");
    await saveSafetensors(file, { a: tensor([1]) });
    expect(await loadSafetensorsMetadata(file)).toBeNull();
    expect(fs.readFileSync(file).toString("latin1")).not.toContain("__metadata__");
  });
});

describe("safetensors save: bad input is refused before anything is written", () => {
  const cases: [string, () => unknown[], RegExp][] = [
    ["a non-Tensor value", () => [{ a: [1, 2] }], /tensors\["a"\]: expected a Tensor, got an array/],
    ["a reserved name", () => [{ __metadata__: tensor([1]) }], /"__metadata__" is reserved/],
    ["a non-string metadata value", () => [{ a: tensor([1]) }, { n: 3 }], /metadata\["n"\]: expected a string, got 3/],
    ["metadata that is not a record", () => [{ a: tensor([1]) }, "format=pt"], /metadata: expected a record of strings/],
    ["tensors that are not a record", () => [tensor([1])], /tensors: expected a record or Map/],
    ["a lone surrogate in a name", () => [{ "a\uD800": tensor([1]) }], /lone UTF-16 surrogate/],
    [
      "a disposed tensor",
      () => {
        const t = tensor([1]);
        t.dispose();
        return [{ a: t }];
      },
      /tensors\["a"\]: the tensor was disposed/,
    ],
  ];
  test.each(cases)("%s", async (_label, args, message) => {
    const file = path.join(dir, "keep.safetensors");
    saveSafetensorsSync(file, { old: tensor([42]) });
    const before = fs.readFileSync(file);
    const [tensors, metadata] = args();
    await expect(saveSafetensors(file, tensors as never, metadata as never)).rejects.toThrow(message);
    expect(() => saveSafetensorsSync(file, tensors as never, metadata as never)).toThrow(TypeError);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(["keep.safetensors"]);
  });

  test("a bad path is a TypeError", async () => {
    await expect(saveSafetensors(42 as never, {})).rejects.toThrow(/path: expected a non-empty string, got 42/);
    await expect(loadSafetensors("" as never)).rejects.toThrow(/path: expected a non-empty string/);
    await expect(loadSafetensors(path.join(dir, "nope.safetensors"))).rejects.toThrow(/ENOENT/);
    await expect(loadSafetensors(path.join(dir, "x"), { device: "tpu" as never })).rejects.toThrow(/options.device: unknown device/);
  });
});
