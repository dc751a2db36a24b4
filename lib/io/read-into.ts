/**
 * Reading a tensor's bytes from a file straight into its memory, without a staging buffer: the
 * bytes of a checkpoint tensor land where the model's parameter lives, in one read, on a worker
 * thread. Used by `models.fromPretrained`, so that a load peaks at the model's size.
 */
import * as os from "os";
import type { FileHandle } from "fs/promises";
import { native } from "../binding";
import type { Dtype } from "../dtype";
import { Tensor, handleOf } from "../tensor";

/**
 * Fills `target` with its byte size of `handle`'s bytes from `position`, when they can go there
 * as they are: `target` has the file's `dtype` and is a contiguous CPU tensor, and the host is
 * little-endian like the file. Resolves true once filled; false when it did not apply (nothing
 * read or written), and the caller converts through a staging tensor instead.
 */
export async function readIntoTensor(handle: FileHandle, position: number, target: Tensor, dtype: Dtype): Promise<boolean> {
  if (os.endianness() !== "LE" || target.dtype !== dtype || target.device !== "cpu") return false;
  return native.readIntoTensorAsync({ fd: handle.fd, position, target: handleOf(target) });
}
