/**
 * Async work survives its environment going away: worker threads busy with async merges,
 * unmerges, adapter saves and loads are terminated or call process.exit() mid-flight, many times,
 * and the main thread finally exits with merges in flight. The process must exit normally:
 * a completion callback that runs during teardown must never abort it (SIGABRT).
 * Seed: TL_FUZZ_SEED.
 */
import * as path from "path";
import { DIST, itDist, runNode } from "./support/child";

const WORKERS = 40;
const SEED = Number(process.env.TL_FUZZ_SEED ?? 20240611);

itDist(
  `${WORKERS} worker threads torn down mid-flight (terminate or process.exit), then the main thread: the process exits normally`,
  () => {
    const r = runNode<{ workers: number; exit: number; terminated: number }>(
      [path.join(__dirname, "support/teardown-child.js"), DIST, String(WORKERS), String(SEED)],
      110_000,
    );
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: "" });
    const s = r.result!;
    console.log(`worker teardown (seed ${SEED}): ${s.workers} workers, ${s.exit} called process.exit(), ${s.terminated} were terminated`);
    expect(s.workers).toBe(WORKERS);
    // Both ways of going away were exercised.
    expect(s.exit).toBeGreaterThan(0);
    expect(s.terminated).toBeGreaterThan(0);
  },
  120_000,
);
