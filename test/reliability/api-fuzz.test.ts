/**
 * Property-based API fuzzing: random sequences of calls (tensors, init, ops, modules, adapter
 * injection and management, merge/unmerge, nested withAdaptersDisabled with state changes
 * inside, optimizer steps) with valid and invalid arguments, on an untied and a tied-head model,
 * in a child process so that an abort would show as its exit status. Every failure must be a
 * JS Error that leaves parameter bytes and adapter state exactly as they were; after every
 * success the unmerged base weights hold their pristine bytes and forward equals the adapter
 * formula (see support/api-fuzz.js).
 * Seed: TL_FUZZ_SEED (default fixed); time budget: TL_FUZZ_MS (default 20 s).
 */
import * as path from "path";
import { DIST, itDist, runNode } from "./support/child";

const SEED = Number(process.env.TL_FUZZ_SEED ?? 424242);
const BUDGET_MS = Number(process.env.TL_FUZZ_MS ?? 20_000);

interface Report {
  seed: number;
  calls: number;
  threw: number;
  failureCount: number;
  failures: unknown[];
  finalShape: number[];
  byAction: Record<string, [number, number]>;
  invariantChecks: number;
  refusedInside: number;
  nestedScopes: number;
  tiedRefusals: number;
}

itDist(
  `random call sequences (seed ${SEED}) never crash, every failed call changes nothing, and merge state stays exact`,
  () => {
    const r = runNode<Report>([path.join(__dirname, "support/api-fuzz.js"), DIST, String(SEED), String(BUDGET_MS)], BUDGET_MS + 60_000);
    const crashed = r.status !== 0 || r.signal !== null;
    // On a crash, the child's last stderr lines (a fatal error's message and stack) say where.
    expect({ status: r.status, signal: r.signal, stderr: crashed ? r.stderr.slice(-4000) : "" }).toEqual({ status: 0, signal: null, stderr: "" });
    const report = r.result!;
    console.log(
      `api fuzz (seed ${report.seed}): ${report.calls} calls, ${report.threw} threw a JS Error, ${report.failureCount} invariant failures; ` +
        `${report.invariantChecks} formula/pristine checks, ${report.nestedScopes} nested withAdaptersDisabled levels, ` +
        `${report.refusedInside} state changes refused inside them, ${report.tiedRefusals} merges refused for a tied weight`,
    );
    expect(report.failures).toEqual([]);
    // The merge-state invariants ran, and the nestings and the tied model were reached.
    expect(report.invariantChecks).toBeGreaterThan(500);
    expect(report.nestedScopes).toBeGreaterThan(10);
    expect(report.refusedInside).toBeGreaterThan(50);
    expect(report.tiedRefusals).toBeGreaterThan(0);
    // Both outcomes occur in volume, and every action ran, so the sequences reach deep states.
    expect(report.calls).toBeGreaterThan(1000);
    expect(report.threw).toBeGreaterThan(report.calls / 10);
    expect(report.calls - report.threw).toBeGreaterThan(report.calls / 10);
    for (const [label, [ran]] of Object.entries(report.byAction)) expect([label, ran > 0]).toEqual([label, true]);
    expect(report.finalShape).toEqual([3, 11]);
  },
  120_000,
);
