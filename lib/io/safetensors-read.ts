/**
 * Reading safetensors files. The header is validated completely before any tensor is created;
 * then each tensor's byte range is read on its own through a file handle, copied into libtorch,
 * and dropped, so loading never holds the whole file (or two copies of it) in memory.
 */
import * as fs from "fs";
import { constants as bufferConstants } from "buffer";
import { Device, checkDevice } from "../dtype";
import { FormatError, describe } from "../errors";
import { Tensor, optionsObject } from "../tensor";
import { openRegularFile, openRegularFileSync } from "./regular-file";
import { SafetensorsHeader, SafetensorsTensorInfo, parseHeader, parseHeaderLength, setOwn } from "./safetensors-format";

/** Options of the safetensors loaders. */
export interface LoadSafetensorsOptions {
  /** Where the loaded tensors live. Default `"cpu"`. */
  device?: Device;
}

// Reads larger than this are split: single reads of several GiB are not portable.
const MAX_READ = 1 << 30;

function checkPath(path: unknown): string {
  if (typeof path !== "string" || path.length === 0) throw new TypeError(`path: expected a non-empty string, got ${describe(path)}`);
  return path;
}

function checkOptions(options: unknown): Device {
  const { device } = optionsObject(options as LoadSafetensorsOptions | undefined);
  return device === undefined ? "cpu" : checkDevice(device, "options.device");
}

function allocate(info: SafetensorsTensorInfo, file: string): Buffer {
  // Buffer.alloc would throw a bare RangeError past the platform's limit; say which tensor.
  const limit = bufferConstants.MAX_LENGTH;
  if (info.byteLength > limit) {
    throw new RangeError(`${file}: tensor ${JSON.stringify(info.name)} has ${info.byteLength} bytes, more than one Node.js buffer can hold (${limit})`);
  }
  return Buffer.allocUnsafe(info.byteLength);
}

function ranOut(file: string, what: string, position: number): never {
  throw new FormatError(`${file}: not a valid safetensors file: the file ended at byte ${position} while reading ${what} (it changed while being read?)`);
}

function readExactSync(fd: number, into: Buffer, position: number, file: string, what: string): void {
  let done = 0;
  while (done < into.length) {
    const n = fs.readSync(fd, into, done, Math.min(into.length - done, MAX_READ), position + done);
    if (n === 0) ranOut(file, what, position + done);
    done += n;
  }
}

async function readExact(handle: fs.promises.FileHandle, into: Buffer, position: number, file: string, what: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, Math.min(into.length - done, MAX_READ), position + done);
    if (bytesRead === 0) ranOut(file, what, position + done);
    done += bytesRead;
  }
}

function headerFromFdSync(fd: number, file: string): SafetensorsHeader {
  const size = fs.fstatSync(fd).size;
  const prefix = Buffer.alloc(8);
  if (size >= 8) readExactSync(fd, prefix, 0, file, "the header length");
  const n = parseHeaderLength(prefix, size, file);
  const headerBytes = Buffer.alloc(n);
  readExactSync(fd, headerBytes, 8, file, "the header");
  return parseHeader(headerBytes, size, file);
}

async function headerFromHandle(handle: fs.promises.FileHandle, file: string): Promise<SafetensorsHeader> {
  const size = (await handle.stat()).size;
  const prefix = Buffer.alloc(8);
  if (size >= 8) await readExact(handle, prefix, 0, file, "the header length");
  const n = parseHeaderLength(prefix, size, file);
  const headerBytes = Buffer.alloc(n);
  await readExact(handle, headerBytes, 8, file, "the header");
  return parseHeader(headerBytes, size, file);
}

function unsupported(header: SafetensorsHeader): void {
  const bad = header.tensors.find((t) => t.dtype === null);
  if (bad) {
    throw new FormatError(
      `${header.path}: tensor ${JSON.stringify(bad.name)} has dtype ${bad.formatDtype}, which torch-lora cannot load ` +
        `(supported: F32, F64, F16, BF16, I64, I32, U8, BOOL)`,
    );
  }
}

function toTensor(bytes: Buffer, info: SafetensorsTensorInfo, device: Device): Tensor {
  return Tensor.fromBytes(bytes, info.shape, info.dtype!, device);
}

/**
 * Reads and validates the header of a safetensors file without loading any tensor data
 * (synchronous twin of {@link readSafetensorsHeader}).
 *
 * @throws FormatError when the file breaks any rule of the format (the message names the file,
 *   the tensor and the problem) or is not a regular file (a directory, a FIFO, a device); Node's
 *   own errors (ENOENT, EACCES, ...) when it cannot be opened.
 */
export function readSafetensorsHeaderSync(path: string): SafetensorsHeader {
  const file = checkPath(path);
  const fd = openRegularFileSync(file);
  try {
    return headerFromFdSync(fd, file);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads and validates the header of a safetensors file without loading any tensor data: names,
 * dtypes, shapes, byte sizes and offsets of every tensor, and the `__metadata__` map.
 * Tensors of dtypes valid in the format but unsupported here are listed with `dtype: null`.
 *
 * @throws FormatError when the file breaks any rule of the format.
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const file = checkPath(path);
  const handle = await openRegularFile(file);
  try {
    return await headerFromHandle(handle, file);
  } finally {
    await handle.close();
  }
}

/** The `__metadata__` map of a safetensors file, or null when it has none (synchronous). */
export function loadSafetensorsMetadataSync(path: string): Record<string, string> | null {
  return readSafetensorsHeaderSync(path).metadata;
}

/**
 * The `__metadata__` map of a safetensors file, or null when it has none. The whole header is
 * validated, so a corrupt file is reported here too.
 */
export async function loadSafetensorsMetadata(path: string): Promise<Record<string, string> | null> {
  return (await readSafetensorsHeader(path)).metadata;
}

/**
 * Loads every tensor of a safetensors file (synchronous twin of {@link loadSafetensors}).
 *
 * @returns A record from tensor name to Tensor, with keys in sorted order.
 */
export function loadSafetensorsSync(path: string, options: LoadSafetensorsOptions = {}): Record<string, Tensor> {
  const file = checkPath(path);
  const device = checkOptions(options);
  const fd = openRegularFileSync(file);
  try {
    const header = headerFromFdSync(fd, file);
    unsupported(header);
    const out: Record<string, Tensor> = {};
    for (const info of header.tensors) {
      const bytes = allocate(info, file);
      readExactSync(fd, bytes, header.dataStart + info.dataOffsets[0], file, `tensor ${JSON.stringify(info.name)}`);
      setOwn(out, info.name, toTensor(bytes, info, device));
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Loads every tensor of a safetensors file written by this library, the Python `safetensors`
 * package or any other conforming writer. The header is validated completely first; then each
 * tensor's bytes are read separately, so peak memory is one tensor's bytes beyond the result.
 *
 * @param path The `.safetensors` file.
 * @param options `device`: where the tensors are created (default `"cpu"`).
 * @returns A record from tensor name to Tensor, with keys in sorted order.
 * @throws FormatError for a malformed file or a dtype torch-lora does not support (I8, U16, F8, ...).
 */
export async function loadSafetensors(path: string, options: LoadSafetensorsOptions = {}): Promise<Record<string, Tensor>> {
  const file = checkPath(path);
  const device = checkOptions(options);
  const handle = await openRegularFile(file);
  try {
    const header = await headerFromHandle(handle, file);
    unsupported(header);
    const out: Record<string, Tensor> = {};
    for (const info of header.tensors) {
      const bytes = allocate(info, file);
      await readExact(handle, bytes, header.dataStart + info.dataOffsets[0], file, `tensor ${JSON.stringify(info.name)}`);
      setOwn(out, info.name, toTensor(bytes, info, device));
    }
    return out;
  } finally {
    await handle.close();
  }
}
