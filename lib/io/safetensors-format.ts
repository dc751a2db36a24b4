/**
 * The safetensors header: parsing with strict validation, and building. Pure functions over
 * bytes; the file reading and writing live in safetensors-read.ts / safetensors-write.ts.
 *
 * File layout: 8 bytes little-endian u64 `N`, `N` bytes of UTF-8 JSON (possibly padded with
 * spaces), then the data area. Offsets in the header are relative to the data area. The rules
 * follow the reference implementation (huggingface/safetensors): the header is at most
 * 100,000,000 bytes; tensors sorted by offset must tile the data area exactly, from 0 to its
 * end, without gaps, overlaps or trailing bytes; `__metadata__` maps strings to strings.
 */
import { Dtype } from "../dtype";
import { FormatError } from "../errors";
import { MAX_JSON_DEPTH, excessNestingOffset } from "./json-depth";

/** Largest header the reference implementation accepts; also bounds what a hostile file can make us allocate. */
export const MAX_HEADER_BYTES = 100_000_000;

/** Tensors with more dimensions are refused: no real checkpoint has them, and a hostile file could declare millions. */
export const MAX_DIMS = 64;

interface DtypeInfo {
  /** Bits per element (sub-byte formats exist in the format). */
  bits: number;
  /** Our name for it, or null when torch-lora cannot hold it. */
  dtype: Dtype | null;
}

// Every dtype name of the format, in the reference's declaration order (it orders data by
// descending position in this list, which puts the widest alignments first).
const FORMAT_DTYPES: [string, DtypeInfo][] = [
  ["BOOL", { bits: 8, dtype: "bool" }],
  ["F4", { bits: 4, dtype: null }],
  ["F6_E2M3", { bits: 6, dtype: null }],
  ["F6_E3M2", { bits: 6, dtype: null }],
  ["U8", { bits: 8, dtype: "uint8" }],
  ["I8", { bits: 8, dtype: null }],
  ["F8_E5M2", { bits: 8, dtype: null }],
  ["F8_E4M3", { bits: 8, dtype: null }],
  ["F8_E8M0", { bits: 8, dtype: null }],
  ["I16", { bits: 16, dtype: null }],
  ["U16", { bits: 16, dtype: null }],
  ["F16", { bits: 16, dtype: "float16" }],
  ["BF16", { bits: 16, dtype: "bfloat16" }],
  ["I32", { bits: 32, dtype: "int32" }],
  ["U32", { bits: 32, dtype: null }],
  ["F32", { bits: 32, dtype: "float32" }],
  ["C64", { bits: 64, dtype: null }],
  ["F64", { bits: 64, dtype: "float64" }],
  ["I64", { bits: 64, dtype: "int64" }],
  ["U64", { bits: 64, dtype: null }],
];
const BY_NAME = new Map(FORMAT_DTYPES);
const RANK = new Map(FORMAT_DTYPES.map(([name], i) => [name, i]));

/** Our dtype → the format's dtype name. */
export const FORMAT_NAME_OF: Readonly<Record<Dtype, string>> = {
  float32: "F32",
  float64: "F64",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  uint8: "U8",
  bool: "BOOL",
};

/** One tensor entry of a safetensors header. */
export interface SafetensorsTensorInfo {
  /** The tensor's name (the key in the header). */
  name: string;
  /** The dtype as the file spells it: `"F32"`, `"BF16"`, ... */
  formatDtype: string;
  /** The torch-lora dtype, or null when the file's dtype is valid but not supported here (I8, U16, F8_E4M3, ...). */
  dtype: Dtype | null;
  /** Size of each dimension. */
  shape: number[];
  /** Number of elements (product of `shape`). */
  numel: number;
  /** `[begin, end)` byte offsets relative to the start of the data area. */
  dataOffsets: [number, number];
  /** `end - begin`. */
  byteLength: number;
}

/** A parsed and validated safetensors header. */
export interface SafetensorsHeader {
  /** The file the header was read from. */
  path: string;
  /** Size of the file in bytes. */
  fileSize: number;
  /** `N`: the byte length of the JSON header (padding included). */
  headerLength: number;
  /** Absolute file offset where the data area starts (`8 + N`). */
  dataStart: number;
  /** Size of the data area in bytes. */
  dataLength: number;
  /** The tensors, sorted by name. */
  tensors: SafetensorsTensorInfo[];
  /** The `__metadata__` map, or null when the file has none. */
  metadata: Record<string, string> | null;
}

function fail(file: string, problem: string): never {
  throw new FormatError(`${file}: not a valid safetensors file: ${problem}`);
}

function failTensor(file: string, name: string, problem: string): never {
  throw new FormatError(`${file}: not a valid safetensors file: tensor ${JSON.stringify(name)}: ${problem}`);
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? text.slice(0, 77) + "..." : text;
}

/**
 * Reads the 8-byte length prefix and checks it against the limits and the file size.
 * Returns N, the header's byte length.
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8) fail(file, `the file has ${fileSize} bytes, fewer than the 8-byte header length prefix`);
  const n = Buffer.from(prefix.buffer, prefix.byteOffset, 8).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    fail(file, `the header length prefix declares ${n} bytes, more than the ${MAX_HEADER_BYTES} allowed`);
  }
  const length = Number(n);
  if (8 + length > fileSize) {
    fail(file, `the header length prefix declares ${length} bytes, but only ${fileSize - 8} bytes follow it (truncated file?)`);
  }
  return length;
}

function checkNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function parseTensorEntry(file: string, name: string, entry: unknown): Omit<SafetensorsTensorInfo, "name"> {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    failTensor(file, name, `expected an object with dtype, shape and data_offsets, got ${show(entry)}`);
  }
  const { dtype: formatDtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof formatDtype !== "string") failTensor(file, name, `"dtype" must be a string, got ${show(formatDtype)}`);
  const info = BY_NAME.get(formatDtype);
  if (info === undefined) {
    failTensor(file, name, `unknown dtype ${show(formatDtype)}; the format knows ${FORMAT_DTYPES.map(([n]) => n).join(", ")}`);
  }
  if (!Array.isArray(shape)) failTensor(file, name, `"shape" must be an array of non-negative integers, got ${show(shape)}`);
  if (shape.length > MAX_DIMS) failTensor(file, name, `"shape" has ${shape.length} dimensions, more than the ${MAX_DIMS} supported`);
  shape.forEach((d, i) => {
    if (!checkNonNegativeInteger(d)) failTensor(file, name, `"shape"[${i}] must be a non-negative integer, got ${show(d)}`);
  });
  if (!Array.isArray(offsets) || offsets.length !== 2 || !checkNonNegativeInteger(offsets[0]) || !checkNonNegativeInteger(offsets[1])) {
    failTensor(file, name, `"data_offsets" must be [begin, end] with non-negative integers, got ${show(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) failTensor(file, name, `"data_offsets" [${begin}, ${end}] ends before it begins`);
  // BigInt: a hostile shape can overflow 2^53 before a later zero dimension brings it back.
  let numel = 1n;
  for (const d of shape as number[]) numel *= BigInt(d);
  const bits = numel * BigInt(info.bits);
  if (bits % 8n !== 0n) failTensor(file, name, `${numel} elements of ${formatDtype} do not fill a whole number of bytes`);
  const expected = bits / 8n;
  if (expected !== BigInt(end - begin)) {
    failTensor(
      file,
      name,
      `shape [${(shape as number[]).join(", ")}] of ${formatDtype} needs ${expected} bytes, but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  // A tensor with data fits its byte count, so it is small. A zero dimension makes numel 0 and
  // the byte count 0, but huge other dimensions would still overflow the strides libtorch
  // computes from the shape.
  let span = 1n;
  for (const d of shape as number[]) if (d !== 0) span *= BigInt(d);
  if (span > BigInt(Number.MAX_SAFE_INTEGER)) {
    failTensor(file, name, `shape ${show(shape)}: its non-zero dimensions multiply to ${span}, more than 2^53 - 1`);
  }
  return { formatDtype, dtype: info.dtype, shape: shape as number[], numel: Number(numel), dataOffsets: [begin, end], byteLength: end - begin };
}

function parseMetadata(file: string, value: unknown): Record<string, string> | null {
  if (value === null) return null; // the reference reads `null` as "no metadata"
  if (typeof value !== "object" || Array.isArray(value)) {
    fail(file, `"__metadata__" must be an object mapping strings to strings, got ${show(value)}`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as object)) {
    if (typeof v !== "string") fail(file, `"__metadata__" entry ${JSON.stringify(k)} must be a string, got ${show(v)}`);
    setOwn(out, k, v);
  }
  return out;
}

/** Assigns an own property, even for keys such as `__proto__` that plain assignment would treat specially. */
export function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Parses and validates the JSON header bytes of a file whose total size is `fileSize` and whose
 * header is `headerBytes.length` bytes long. Throws a {@link FormatError} naming the file, the
 * tensor and the problem for every rule the file breaks.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const headerLength = headerBytes.byteLength;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    fail(file, "the header is not valid UTF-8");
  }
  const deep = excessNestingOffset(text);
  if (deep >= 0) fail(file, `the header nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep (at character ${deep} of the header)`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail(file, `the header is not valid JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    fail(file, `the header must be a JSON object, got ${json === null ? "null" : Array.isArray(json) ? "an array" : typeof json}`);
  }
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(json as object)) {
    if (name === "__metadata__") metadata = parseMetadata(file, entry);
    else tensors.push({ name, ...parseTensorEntry(file, name, entry) });
  }
  // Tile check, in offset order, as the reference does: each tensor starts where the previous ended.
  const byOffset = tensors.slice().sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let previous: string | null = null;
  for (const t of byOffset) {
    const [begin, end] = t.dataOffsets;
    if (end > dataLength) {
      failTensor(file, t.name, `data_offsets [${begin}, ${end}] reach past the end of the ${dataLength}-byte data area (truncated file?)`);
    }
    if (begin < cursor) {
      failTensor(file, t.name, `data_offsets [${begin}, ${end}] overlap tensor ${JSON.stringify(previous)}, which ends at ${cursor}`);
    }
    if (begin > cursor) {
      failTensor(file, t.name, `data_offsets [${begin}, ${end}] leave bytes [${cursor}, ${begin}) of the data area unused`);
    }
    cursor = end;
    previous = t.name;
  }
  if (cursor !== dataLength) {
    fail(file, `the tensors cover ${cursor} bytes of the data area, but it has ${dataLength} (${dataLength - cursor} bytes belong to no tensor)`);
  }
  tensors.sort((a, b) => compareNames(a.name, b.name));
  return { path: file, fileSize, headerLength, dataStart, dataLength, tensors, metadata };
}

/** Byte-wise comparison of the UTF-8 encodings, the order the reference implementation sorts names in. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** One tensor to be written: name, dtype, shape and its data length. */
export interface HeaderEntry {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  byteLength: number;
}

/**
 * Lays out the tensors as the reference writer does (descending dtype alignment, then name, so
 * every tensor starts at an offset aligned to its element size) and builds the header bytes,
 * padded with spaces to a multiple of 8. Returns the header (length prefix included) and the
 * entries in data order.
 */
export function buildHeader(entries: HeaderEntry[], metadata: Record<string, string> | null): { header: Buffer; order: HeaderEntry[] } {
  const order = entries.slice().sort((a, b) => {
    const rank = RANK.get(FORMAT_NAME_OF[b.dtype])! - RANK.get(FORMAT_NAME_OF[a.dtype])!;
    return rank || compareNames(a.name, b.name);
  });
  // Built piece by piece: a key such as "__proto__" must survive, and the order must be ours.
  const parts: string[] = [];
  if (metadata !== null) {
    const keys = Object.keys(metadata).sort(compareNames);
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`);
  }
  let offset = 0;
  for (const e of order) {
    const info = { dtype: FORMAT_NAME_OF[e.dtype], shape: e.shape, data_offsets: [offset, offset + e.byteLength] };
    parts.push(`${JSON.stringify(e.name)}:${JSON.stringify(info)}`);
    offset += e.byteLength;
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) {
    throw new RangeError(`tensors: the header would take ${padded} bytes, more than the ${MAX_HEADER_BYTES} a safetensors reader accepts`);
  }
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, order };
}
