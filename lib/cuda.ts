/** CUDA availability, as seen by the libtorch the addon was built against. */
import { native } from "./binding";

/** True when the libtorch build has CUDA and a GPU is visible. */
export function isAvailable(): boolean {
  return native.buildInfo().cudaAvailable;
}

/** Number of visible CUDA devices (0 on CPU builds). */
export function deviceCount(): number {
  return native.buildInfo().cudaDeviceCount;
}
