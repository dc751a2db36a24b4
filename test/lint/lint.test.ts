/**
 * The lint gate inside `npm test`: ESLint over the tree and the format checks (prettier,
 * clang-format) over what scripts/format-checked.json names, as `npm run lint` runs them.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { itUnless } from "../helpers/skip";

const ROOT = path.resolve(__dirname, "../..");
const hasClangFormat = spawnSync("clang-format", ["--version"]).status === 0;

itUnless(hasClangFormat ? null : "no clang-format (apt-get install clang-format)", "npm run lint passes", () => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "scripts/lint.js")], { cwd: ROOT, encoding: "utf8" });
  expect(r.stdout + r.stderr).not.toMatch(/lint: .* failed/);
  expect(r.status).toBe(0);
});
