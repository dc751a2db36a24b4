/**
 * The public types: test/types/*.types.ts must compile with `tsc --noEmit`, and every
 * `@ts-expect-error` there must meet an error (tsc reports an unused one), so a type that became
 * too loose (e.g. `forward` back to `(...args: unknown[]) => unknown`) fails this test.
 */
import { spawnSync } from "child_process";
import * as path from "path";

const ROOT = path.join(__dirname, "..", "..");

test("the public types: LoraModel<M> and the core API (tsc --noEmit on test/types/*.types.ts)", () => {
  const tsc = require.resolve("typescript/bin/tsc", { paths: [ROOT] });
  const r = spawnSync(process.execPath, [tsc, "--noEmit", "-p", path.join(__dirname, "tsconfig.json")], { cwd: ROOT, encoding: "utf8" });
  expect(r.stdout + r.stderr).toBe("");
  expect(r.status).toBe(0);
}, 120_000);
