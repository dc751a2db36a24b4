/**
 * Child process of the fuzz test: mutates and truncates valid safetensors files many times and
 * loads each result. Every outcome must be a successful load (whose tensors match the header) or
 * a FormatError with a message; anything else, or a crash of the process, fails the test.
 * Prints one JSON line with the counts. Arguments: runs, seed, and optionally a file where every
 * case is recorded, one JSON line each (the file's bytes and what the loader made of them), for
 * the independent validator (safetensors_oracle.py) to judge.
 */
import * as fs from "fs";
import * as path from "path";
import fc from "fast-check";
import { FormatError, Tensor, tensor, arange } from "../../../lib";
import { dtypeSize } from "../../../lib/dtype";
import { FORMAT_NAME_OF, setOwn } from "../../../lib/io/safetensors-format";
import { loadSafetensors, loadSafetensorsSync, readSafetensorsHeaderSync, saveSafetensorsSync } from "../../../lib/io";
import { makeTempDir } from "../../helpers/temp";

const runs = Number(process.argv[2]);
const seed = Number(process.argv[3]);
const record = process.argv[4];
const recorded: string[] = [];
const dir = makeTempDir("tl-fuzz-");
const target = path.join(dir, "fuzz.safetensors");

// Valid starting points: mixed dtypes, metadata, a scalar, a zero-size tensor, an empty file.
function base(name: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Buffer {
  const f = path.join(dir, name);
  saveSafetensorsSync(f, tensors, metadata);
  return fs.readFileSync(f);
}
const bases = [
  base("a", { w: arange(0, 6).reshape([2, 3]), b: tensor([1, 2], { dtype: "float16" }), ids: tensor([3, 4], { dtype: "int64" }) }, { format: "pt" }),
  base("b", {
    m: tensor([1, 0, 1], { dtype: "bool" }),
    u: tensor([7], { dtype: "uint8" }),
    s: tensor(2.5, { dtype: "float64" }),
    z: tensor([], { dtype: "bfloat16" }),
  }),
  base("c", { x: tensor([1, 2, 3, 4], { dtype: "int32" }), y: tensor([0.5], { dtype: "bfloat16" }) }, { a: "1", b: "two" }),
  base("d", {}),
];

type Mutation = (b: Buffer) => Buffer;

const truncate = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }).map(
    (r): Mutation =>
      (b) =>
        b.subarray(0, Math.floor(r * b.length)),
  ),
  fc.integer({ min: 1, max: 16 }).map(
    (k): Mutation =>
      (b) =>
        b.subarray(0, Math.max(0, b.length - k)),
  ),
);
const flips = fc
  .array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })
  .map((list): Mutation => (b) => {
    const out = Buffer.from(b);
    for (const [r, v] of list) if (out.length) out[Math.floor(r * out.length)] = v;
    return out;
  });
const lengthPrefix = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((n): Mutation => (b) => {
    const out = Buffer.from(b);
    out.writeBigUInt64LE(n, 0);
    return out;
  }),
  fc.integer({ min: -16, max: 16 }).map((delta): Mutation => (b) => {
    const out = Buffer.from(b);
    out.writeBigUInt64LE(BigInt(Math.max(0, Number(b.readBigUInt64LE(0)) + delta)), 0);
    return out;
  }),
);
const splice = fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(16), fc.uint8Array({ maxLength: 16 })).map(([r, del, ins]): Mutation => (b) => {
  const at = Math.floor(r * b.length);
  return Buffer.concat([b.subarray(0, at), Buffer.from(ins), b.subarray(Math.min(b.length, at + del))]);
});
// Structured: edit the parsed header (a field, an entry, the metadata), re-encode with a correct prefix.
const jsonEdit = fc
  .tuple(
    fc.nat(),
    fc.constantFrom("dtype", "shape", "data_offsets", "__entry__", "__metadata__", "__newkey__"),
    fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.array(fc.integer({ min: -3, max: 1 << 20 }), { maxLength: 4 }),
      fc.tuple(fc.integer({ min: -2, max: 64 }), fc.integer({ min: -2, max: 64 })),
      fc.constantFrom("F32", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F64", "I8", "F4", "U64", "f32", ""),
      fc.constant(Number.MAX_SAFE_INTEGER),
      fc.constant(1e300),
    ),
    fc.integer({ min: -8, max: 8 }),
  )
  .map(([pick, field, value, dataDelta]): Mutation => (b) => {
    const n = Number(b.readBigUInt64LE(0));
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(b.subarray(8, 8 + n).toString("utf8"));
      if (header === null || typeof header !== "object") return b;
    } catch {
      return b; // an earlier mutation already broke the JSON; nothing structured to edit
    }
    const names = Object.keys(header).filter((k) => k !== "__metadata__");
    const name = names.length ? names[pick % names.length] : "t";
    if (field === "__metadata__") header.__metadata__ = value;
    else if (field === "__entry__") header[name] = value;
    else if (field === "__newkey__") header[`new${pick % 3}`] = value;
    else if (header[name] && typeof header[name] === "object") (header[name] as Record<string, unknown>)[field] = value;
    const json = Buffer.from(JSON.stringify(header));
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    let data = b.subarray(8 + n);
    data = dataDelta < 0 ? data.subarray(0, Math.max(0, data.length + dataDelta)) : Buffer.concat([data, Buffer.alloc(dataDelta, 0x41)]);
    return Buffer.concat([prefix, json, data]);
  });

// Near misses: slide one tensor's offsets by a few bytes, and grow or shrink the data area by a
// few: overlaps, gaps and ends past the data by one byte, the cases an off-by-one check lets by.
const slide = fc.tuple(fc.nat(), fc.integer({ min: -2, max: 2 }), fc.integer({ min: -2, max: 2 })).map(([pick, shift, dataDelta]): Mutation => (b) => {
  const n = Number(b.readBigUInt64LE(0));
  let header: Record<string, { data_offsets?: unknown }>;
  try {
    header = JSON.parse(b.subarray(8, 8 + n).toString("utf8"));
  } catch {
    return b;
  }
  const names = Object.keys(header ?? {}).filter((k) => k !== "__metadata__" && Array.isArray(header[k]?.data_offsets));
  if (names.length === 0) return b;
  const entry = header[names[pick % names.length]];
  entry.data_offsets = (entry.data_offsets as number[]).map((o) => (typeof o === "number" ? Math.max(0, o + shift) : o));
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  let data = b.subarray(8 + n);
  data = dataDelta < 0 ? data.subarray(0, Math.max(0, data.length + dataDelta)) : Buffer.concat([data, Buffer.alloc(dataDelta, 0x42)]);
  return Buffer.concat([prefix, json, data]);
});

// Weighted towards structured edits: they get past JSON parsing and exercise the entry checks.
const mutation = fc.oneof(
  { arbitrary: jsonEdit, weight: 6 },
  { arbitrary: slide, weight: 2 },
  { arbitrary: flips, weight: 2 },
  { arbitrary: truncate, weight: 1 },
  { arbitrary: lengthPrefix, weight: 1 },
  { arbitrary: splice, weight: 1 },
);
const counts = { runs: 0, loaded: 0, formatErrors: 0 };
const failures: string[] = [];

function checkLoaded(loaded: Record<string, Tensor>, file: string): void {
  const header = readSafetensorsHeaderSync(file);
  for (const info of header.tensors) {
    const t = loaded[info.name];
    if (!t || t.dtype !== info.dtype || t.shape.join() !== info.shape.join() || t.toBytes().length !== info.numel * dtypeSize(info.dtype!)) {
      throw new Error(`loaded tensor ${JSON.stringify(info.name)} does not match its header entry`);
    }
  }
  if (Object.keys(loaded).length !== header.tensors.length) throw new Error("loaded a different number of tensors than the header lists");
}

const property = fc.asyncProperty(
  fc.nat(bases.length - 1),
  fc.array(mutation, { minLength: 1, maxLength: 3 }),
  fc.boolean(),
  async (which, mutations, useAsync) => {
    counts.runs++;
    let bytes = bases[which];
    for (const m of mutations) bytes = bytes.length >= 8 ? m(bytes) : bytes;
    fs.writeFileSync(target, bytes);
    const id = counts.runs;
    try {
      const loaded = useAsync ? await loadSafetensors(target) : loadSafetensorsSync(target);
      checkLoaded(loaded, target);
      counts.loaded++;
      if (record) {
        const tensors: Record<string, [string, number[], string]> = {};
        for (const [name, t] of Object.entries(loaded)) setOwn(tensors, name, [FORMAT_NAME_OF[t.dtype], t.shape, t.toBytes().toString("hex")]);
        recorded.push(JSON.stringify({ id, b64: bytes.toString("base64"), outcome: "loaded", tensors }));
      }
    } catch (err) {
      if (record)
        recorded.push(
          JSON.stringify({ id, b64: bytes.toString("base64"), outcome: err instanceof FormatError ? "formatError" : "other", message: String(err) }),
        );
      if (err instanceof FormatError && err.message.length > 0) counts.formatErrors++;
      else failures.push(`${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} (file bytes: ${bytes.toString("base64")})`);
    }
  },
);

fc.assert(property, { numRuns: runs, seed })
  .then(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (record) fs.writeFileSync(record, recorded.join("\n") + "\n");
    process.stdout.write(JSON.stringify({ ...counts, seed, failures: failures.slice(0, 5), failureCount: failures.length }) + "\n");
    process.exit(failures.length === 0 ? 0 : 1);
  })
  .catch((err) => {
    process.stdout.write(JSON.stringify({ ...counts, seed, error: String(err) }) + "\n");
    process.exit(2);
  });
