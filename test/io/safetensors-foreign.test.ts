import * as fs from "fs";
import * as path from "path";
import { loadSafetensors, loadSafetensorsMetadata, saveSafetensors } from "../../lib/io";
import { tensor, Tensor } from "../../lib";
import { handBuilt, hasPythonTorch, runPython, tempDir } from "./support/files";
import { NO_TORCH, itUnless } from "../helpers/skip";

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

describe("files written by other writers", () => {
  test("a hand-assembled file (unsorted keys, unpadded header, leading space) loads with the right values", async () => {
    // Data area, laid out in an order unrelated to the names:
    //   [0, 4)   "mask": BOOL [4]       = 1 0 0 1
    //   [4, 8)   "h":    F16 [2]        = 0x3C00 (1.0), 0xC000 (-2.0)
    //   [8, 12)  "b":    BF16 [2]       = 0x3F80 (1.0), 0x4049 (3.140625)
    //   [12, 20) "w":    F32 [2]        = 0.5, -0.25
    //   [20, 36) "ids":  I64 [2]        = 7, -1
    //   [36, 44) "d":    F64 [1]        = 0.1
    //   [44, 48) "i":    I32 [1]        = -123456
    //   [48, 50) "u":    U8 [2]         = 255, 0
    const data = Buffer.alloc(50);
    data.set([1, 0, 0, 1], 0);
    data.writeUInt16LE(0x3c00, 4);
    data.writeUInt16LE(0xc000, 6);
    data.writeUInt16LE(0x3f80, 8);
    data.writeUInt16LE(0x4049, 10);
    data.writeFloatLE(0.5, 12);
    data.writeFloatLE(-0.25, 16);
    data.writeBigInt64LE(7n, 20);
    data.writeBigInt64LE(-1n, 28);
    data.writeDoubleLE(0.1, 36);
    data.writeInt32LE(-123456, 44);
    data.set([255, 0], 48);
    const header =
      ' {"w":{"shape":[2,1],"dtype":"F32","data_offsets":[12,20]},"mask":{"dtype":"BOOL","shape":[2,2],"data_offsets":[0,4]},' +
      '"ids":{"dtype":"I64","shape":[2],"data_offsets":[20,36]},"d":{"dtype":"F64","shape":[],"data_offsets":[36,44]},' +
      '"h":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},' +
      '"__metadata__":{"format":"pt","source":"hand"},"i":{"dtype":"I32","shape":[1],"data_offsets":[44,48]},' +
      '"u":{"dtype":"U8","shape":[2],"data_offsets":[48,50]}}';
    const file = path.join(dir, "hand.safetensors");
    fs.writeFileSync(file, handBuilt(header, data));
    const t = await loadSafetensors(file);
    expect(Object.keys(t)).toEqual(["b", "d", "h", "i", "ids", "mask", "u", "w"]);
    expect([t.mask.dtype, t.mask.shape, t.mask.toList()]).toEqual(["bool", [2, 2], [1, 0, 0, 1]]);
    expect([t.h.dtype, t.h.toList()]).toEqual(["float16", [1, -2]]);
    expect([t.b.dtype, t.b.toList()]).toEqual(["bfloat16", [1, 3.140625]]);
    expect([t.w.dtype, t.w.shape, t.w.toList()]).toEqual(["float32", [2, 1], [0.5, -0.25]]);
    expect([t.ids.dtype, Array.from(t.ids.toArray() as BigInt64Array)]).toEqual(["int64", [7n, -1n]]);
    expect([t.d.dtype, t.d.shape, t.d.item()]).toEqual(["float64", [], 0.1]);
    expect([t.i.dtype, t.i.toList()]).toEqual(["int32", [-123456]]);
    expect([t.u.dtype, t.u.toList()]).toEqual(["uint8", [255, 0]]);
    expect(await loadSafetensorsMetadata(file)).toEqual({ format: "pt", source: "hand" });
  });
});

// A minimal safetensors writer and reader in Python (struct + json + torch), independent of this library.
const PY_WRITER = `
import json, struct, sys, torch
torch.manual_seed(0)
tensors = {
  "f32": torch.randn(3, 4),
  "f64": torch.randn(5, dtype=torch.float64),
  "f16": torch.randn(2, 3).half(),
  "bf16": torch.randn(4).bfloat16(),
  "i64": torch.tensor([[-(2**40), 3], [0, 2**62]], dtype=torch.int64),
  "i32": torch.tensor([7, -8, 2**31 - 1], dtype=torch.int32),
  "u8": torch.arange(250, 256, dtype=torch.uint8),
  "b": torch.tensor([True, False, True]),
  "empty": torch.zeros(0, 3),
}
header, blobs, offset = {"__metadata__": {"format": "pt", "writer": "python"}}, [], 0
for name in sorted(tensors, reverse=True):  # deliberately not the reference's order
    t = tensors[name]
    raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
    dt = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}[t.dtype]
    header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw); offset += len(raw)
h = json.dumps(header).encode()
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); f.write(b"".join(blobs))
print(json.dumps({k: {"shape": list(v.shape), "values": [str(x) for x in v.double().flatten().tolist()] if v.is_floating_point() else [str(int(x)) for x in v.flatten().tolist()]} for k, v in tensors.items()}))
`;

const PY_READER = `
import json, struct, sys, torch
with open(sys.argv[1], "rb") as f:
    raw = f.read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
dtypes = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "I64": torch.int64,
          "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
out = {"__metadata__": header.pop("__metadata__", None), "__headerlen__": n}
for name, e in header.items():
    b, end = e["data_offsets"]
    chunk = bytearray(data[b:end])
    if e["dtype"] == "BF16":
        t = torch.frombuffer(chunk, dtype=torch.int16).view(torch.bfloat16) if chunk else torch.zeros(0, dtype=torch.bfloat16)
    else:
        t = torch.frombuffer(chunk, dtype=dtypes[e["dtype"]]) if chunk else torch.zeros(0, dtype=dtypes[e["dtype"]])
    t = t.reshape(e["shape"])
    out[name] = {"dtype": e["dtype"], "shape": list(t.shape),
                 "values": [repr(x) for x in (t.double() if t.is_floating_point() else t.long()).flatten().tolist()]}
print(json.dumps(out))
`;

const pyTest = (title: string, fn: () => Promise<void>) => itUnless(hasPythonTorch() ? null : NO_TORCH, title, fn);

function jsValues(t: Tensor): string[] {
  if (t.dtype === "int64") return Array.from(t.toArray() as BigInt64Array, (v) => v.toString());
  if (t.dtype === "float16" || t.dtype === "bfloat16" || t.dtype === "float32" || t.dtype === "float64") {
    return Array.from(t.to("float64").toArray() as Float64Array, (v) => pyFloat(v));
  }
  return t.toList().map((v) => String(v));
}

/** Python's repr/str of a float (shortest round-trip digits, ".0" for integral values, "e-05" exponents). */
function pyFloat(v: number): string {
  if (Object.is(v, -0)) return "-0.0";
  if (Number.isInteger(v) && Math.abs(v) < 1e16) return v.toFixed(1);
  const s = String(v);
  return s.replace(/e([+-])(\d)$/, "e$10$2");
}

describe("PyTorch cross-check (independent struct+json writer and reader in /usr/bin/python3)", () => {
  pyTest("a file written by Python loads with the values PyTorch printed", async () => {
    const file = path.join(dir, "py.safetensors");
    const expected = JSON.parse(runPython(PY_WRITER, [file])) as Record<string, { shape: number[]; values: string[] }>;
    const loaded = await loadSafetensors(file);
    expect(Object.keys(loaded).sort()).toEqual(Object.keys(expected).sort());
    for (const [name, e] of Object.entries(expected)) {
      expect([name, loaded[name].shape]).toEqual([name, e.shape]);
      expect([name, jsValues(loaded[name])]).toEqual([name, e.values]);
    }
    expect(await loadSafetensorsMetadata(file)).toEqual({ format: "pt", writer: "python" });
  });

  pyTest("a file written here reads back in Python with the same values", async () => {
    const file = path.join(dir, "ours.safetensors");
    const tensors = {
      w: tensor([
        [0.1, -2.5],
        [3e-8, 1e10],
      ]),
      d: tensor([Math.PI, -0], { dtype: "float64" }),
      h: tensor([0.333, 65504, -1e-7], { dtype: "float16" }),
      bf: tensor([1.1, -300.5], { dtype: "bfloat16" }),
      ids: tensor(new BigInt64Array([-(2n ** 40n), 2n ** 62n])),
      i: tensor([2147483647, -5], { dtype: "int32" }),
      u: tensor([0, 255], { dtype: "uint8" }),
      m: tensor([1, 0, 1], { dtype: "bool" }),
    };
    await saveSafetensors(file, tensors, { format: "pt" });
    const py = JSON.parse(runPython(PY_READER, [file]));
    expect(py.__metadata__).toEqual({ format: "pt" });
    expect(py.__headerlen__ % 8).toBe(0);
    for (const [name, t] of Object.entries(tensors)) {
      expect([name, py[name].shape]).toEqual([name, t.shape]);
      expect([name, py[name].values]).toEqual([name, jsValues(t)]);
    }
  });
});
