/** libtorch's intra-op thread pool size, and the device of this local rank. */
import { native } from "../binding";
import type { Device } from "../dtype";
import { integerSetting } from "./init-method";

/**
 * Sets how many threads libtorch uses inside one op (at::set_num_threads). Several processes on
 * one machine should share its cores: `torch-lora launch` starts each with OMP_NUM_THREADS=1.
 */
export function setNumThreads(n: number): void {
  native.setNumThreads(integerSetting(n, "n", 1));
}

/** The number of threads libtorch uses inside one op. */
export function getNumThreads(): number {
  return native.getNumThreads();
}

/**
 * The device this process should train on: `cuda:<LOCAL_RANK>` when libtorch sees a GPU (one GPU
 * per local rank, as torchrun's convention), else `"cpu"`.
 */
export function localDevice(env: Record<string, string | undefined> = process.env): Device {
  if (!native.buildInfo().cudaAvailable) return "cpu";
  const local = env.LOCAL_RANK === undefined ? 0 : integerSetting(env.LOCAL_RANK, "LOCAL_RANK", 0);
  return `cuda:${local}`;
}
