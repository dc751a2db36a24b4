/**
 * Writing safetensors files. Every argument is checked before anything touches the disk; the
 * bytes then stream through the atomic writer one tensor at a time (header first), so a save
 * never builds the whole file in memory and a failure or crash leaves the old file in place.
 */
import { DTYPES, dtypeSize } from "../dtype";
import { describe } from "../errors";
import { Tensor } from "../tensor";
import { writeFileAtomic, writeFileAtomicSync } from "./atomic";
import { HeaderEntry, buildHeader } from "./safetensors-format";

/** Tensors to save: a plain record or a Map from name to Tensor. */
export type TensorRecord = Record<string, Tensor> | ReadonlyMap<string, Tensor>;

interface Planned extends HeaderEntry {
  tensor: Tensor;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkText(value: string, what: string): void {
  // A lone surrogate cannot be encoded as UTF-8; JSON.stringify would write an escape other readers reject.
  if (LONE_SURROGATE.test(value)) throw new TypeError(`${what}: ${JSON.stringify(value)} contains a lone UTF-16 surrogate`);
}

function plan(tensors: unknown, metadata: unknown): { entries: Planned[]; meta: Record<string, string> | null } {
  let pairs: [string, unknown][];
  if (tensors instanceof Map) pairs = [...tensors.entries()];
  else if (tensors !== null && typeof tensors === "object" && !Array.isArray(tensors) && !(tensors instanceof Tensor)) {
    pairs = Object.entries(tensors);
  } else {
    throw new TypeError(`tensors: expected a record or Map from names to Tensors, got ${describe(tensors)}`);
  }
  const entries: Planned[] = pairs.map(([name, t]) => {
    if (typeof name !== "string") throw new TypeError(`tensors: names must be strings, got ${describe(name)}`);
    if (name === "__metadata__") throw new TypeError(`tensors: the name "__metadata__" is reserved by the format for the metadata map`);
    checkText(name, "tensors: name");
    if (!(t instanceof Tensor)) throw new TypeError(`tensors[${JSON.stringify(name)}]: expected a Tensor, got ${describe(t)}`);
    if (t.isDisposed) throw new TypeError(`tensors[${JSON.stringify(name)}]: the tensor was disposed`);
    const dtype = t.dtype;
    if (!(DTYPES as readonly string[]).includes(dtype)) {
      throw new TypeError(`tensors[${JSON.stringify(name)}]: dtype ${dtype} cannot be saved; expected one of ${DTYPES.join(", ")}`);
    }
    const shape = t.shape;
    const size = dtypeSize(dtype);
    const byteLength = shape.reduce((a, b) => a * b, 1) * size;
    return { name, dtype, shape, byteLength, tensor: t };
  });
  let meta: Record<string, string> | null = null;
  if (metadata !== undefined && metadata !== null) {
    if (typeof metadata !== "object" || Array.isArray(metadata) || metadata instanceof Map) {
      throw new TypeError(`metadata: expected a record of strings, got ${describe(metadata)}`);
    }
    meta = {};
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new TypeError(`metadata[${JSON.stringify(k)}]: expected a string, got ${describe(v)}`);
      checkText(k, "metadata: key");
      checkText(v, `metadata[${JSON.stringify(k)}]`);
      Object.defineProperty(meta, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
  return { entries, meta };
}

/** The file's bytes, produced lazily: the header, then one tensor's bytes at a time. */
function* chunks(header: Buffer, order: HeaderEntry[]): Generator<Uint8Array> {
  yield header;
  for (const e of order) {
    const bytes = (e as Planned).tensor.toBytes();
    // Guards against a tensor changing between planning and writing (the header is already out).
    if (bytes.length !== e.byteLength) {
      throw new Error(`tensors[${JSON.stringify(e.name)}]: expected ${e.byteLength} bytes, the tensor produced ${bytes.length}`);
    }
    yield bytes;
  }
}

/**
 * Saves tensors to a safetensors file atomically (synchronous twin of {@link saveSafetensors}).
 */
export function saveSafetensorsSync(path: string, tensors: TensorRecord, metadata?: Record<string, string> | null): void {
  const { entries, meta } = plan(tensors, metadata);
  const { header, order } = buildHeader(entries, meta);
  writeFileAtomicSync(path, chunks(header, order));
}

/**
 * Saves tensors to a safetensors file that the Python `safetensors` package (and every other
 * conforming reader) loads. The layout is deterministic and matches the reference writer: data
 * ordered by descending dtype alignment then name, header JSON padded with spaces to a multiple
 * of 8 bytes, `__metadata__` first with its keys sorted. Tensors on any device are copied to the
 * CPU one at a time while writing; gradients are not saved.
 *
 * The file is replaced atomically (see {@link writeFileAtomic}): on any failure the previous file,
 * if any, is left untouched.
 *
 * @param path The file to create or replace.
 * @param tensors Name → Tensor, as a record or Map. The name `__metadata__` is reserved.
 * @param metadata Optional string → string map stored as `__metadata__` (PEFT writes `{ format: "pt" }`).
 * @throws TypeError for a non-Tensor value, a disposed tensor, a non-string metadata value or a reserved name, before writing anything.
 */
export async function saveSafetensors(path: string, tensors: TensorRecord, metadata?: Record<string, string> | null): Promise<void> {
  const { entries, meta } = plan(tensors, metadata);
  const { header, order } = buildHeader(entries, meta);
  await writeFileAtomic(path, chunks(header, order));
}
