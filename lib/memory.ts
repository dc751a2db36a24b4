/** A count of live native tensors: the leak check a training loop can run on itself. */
import { native } from "./binding";

/** Native tensors alive in this process, as counted by {@link memoryStats}. */
export interface MemoryStats {
  /** Tensor handles created and neither disposed nor garbage-collected yet. */
  liveTensors: number;
  /** The bytes of their elements (numel × element size; a view counts its own elements). */
  liveBytes: number;
}

/**
 * Counts the tensors this process holds through torch-lora, on every device and every
 * worker thread. A handle stops counting when `dispose()` is called or when the garbage
 * collector frees it, so a loop that leaks tensors shows a count that climbs with each
 * iteration, long before RSS tells the leak apart from allocator noise.
 *
 * Tensors that libtorch keeps internally without a handle (an autograd graph's saved
 * tensors, caching allocators) are not counted.
 */
export function memoryStats(): MemoryStats {
  const { liveTensors, liveBytes } = native.memoryStats();
  return { liveTensors, liveBytes };
}
