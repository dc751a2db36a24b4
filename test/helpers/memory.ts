/**
 * Exact live-tensor readings in a test process. Earlier tests (and earlier lines of the same
 * test) leave unreferenced tensors for the garbage collector; a collection that falls between
 * two `memoryStats()` readings would free them and make the second reading lower. Collecting
 * them first makes the difference between the readings belong to the code under test alone.
 */
import * as v8 from "v8";
import * as vm from "vm";

/** Collects every unreferenced tensor now and lets the finalizers queued by that collection run. */
export async function collectLeftovers(): Promise<void> {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  // Node runs N-API finalizers from the event loop after a collection, so yield between rounds.
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}
