/**
 * The skip-summary reporter (test/reporters/skip-summary.js), in a real jest run of a small suite
 * with tests skipped for each kind of reason: the line it prints after jest's summary, and the
 * failed run it makes of a skip other than "no GPU" when CI=true.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { NO_GPU, NO_TORCH, skipTitle } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const ROOT = path.resolve(__dirname, "../..");
const JEST = path.join(ROOT, "node_modules/jest/bin/jest.js");

let tmp: string;

/** Writes a plain-JS suite of `files` (name → source) under <tmp>/<name>; returns a function running jest on it with `env`. */
function suite(name: string, files: Record<string, string>) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, source] of Object.entries(files)) fs.writeFileSync(path.join(dir, file), source);
  const config = { rootDir: dir, testEnvironment: "node", transform: {}, reporters: ["default", path.join(ROOT, "test/reporters/skip-summary.js")] };
  return (env: Record<string, string | undefined>, args: string[] = []) => {
    const r = spawnSync(process.execPath, [JEST, "--config", JSON.stringify(config), "--runInBand", ...args], {
      cwd: dir,
      env: { ...process.env, CI: undefined, ...env },
      encoding: "utf8",
      timeout: 120000,
    });
    const lines = r.stderr.trimEnd().split("\n");
    return { status: r.status, stderr: r.stderr, lines };
  };
}

beforeAll(() => {
  tmp = makeTempDir("torch-lora-skip-summary-");
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("a run with tests skipped for want of a GPU, of PyTorch, and for no stated reason", () => {
  const run = () =>
    suite("mixed", {
      "a.test.js": [
        `it("runs", () => expect(1 + 1).toBe(2));`,
        `it.skip(${JSON.stringify(skipTitle("adds on cuda:0", NO_GPU))}, () => undefined);`,
        `describe.skip(${JSON.stringify(skipTitle("[cuda] block", NO_GPU))}, () => { it("one", () => undefined); it("two", () => undefined); });`,
        `it.skip("with no reason", () => undefined);`,
      ].join("\n"),
      "b.test.js": `describe.skip(${JSON.stringify(skipTitle("against PyTorch", NO_TORCH))}, () => { it("matmul", () => undefined); });`,
    });

  test("ends with one line counting them by reason, after jest's own summary", () => {
    const r = run()({});
    expect(r.status).toBe(0);
    expect(r.lines[r.lines.length - 1]).toBe(
      "Skipped: 5 tests (3 no GPU; 1 no PyTorch to compare against; 1 no reason in the title); `node scripts/setup.js --for test --plan` says how to install PyTorch",
    );
    expect(r.lines[r.lines.length - 2]).toMatch(/^Ran all test suites/);
  });

  test("with CI=true the run fails, listing every skip but those for want of a GPU", () => {
    const r = run()({ CI: "true" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CI=true: every dependency should be installed, but 2 tests were skipped for another reason than "no GPU":');
    expect(r.stderr).toContain("  [no PyTorch to compare against] b.test.js › against PyTorch matmul\n");
    expect(r.stderr).toContain("  [no reason in the title] a.test.js › with no reason\n");
    expect(r.stderr).not.toContain("] a.test.js › adds on cuda:0");
    // jest itself saw no failed test: the failure is the reporter's.
    expect(r.stderr).toContain("Tests:       5 skipped, 1 passed, 6 total");
  });
});

test("with CI=true, skips for want of a GPU alone pass; a run with none says every test ran", () => {
  const gpuOnly = suite("gpu-only", {
    "c.test.js": `it("runs", () => undefined);\ndescribe.skip(${JSON.stringify(skipTitle("[cuda] block", NO_GPU))}, () => { it("one", () => undefined); });`,
  })({ CI: "true" });
  expect(gpuOnly.status).toBe(0);
  expect(gpuOnly.lines[gpuOnly.lines.length - 1]).toBe("Skipped: 1 test (1 no GPU)");
  const none = suite("none", { "d.test.js": `it("runs", () => undefined);` })({ CI: "true" });
  expect(none.status).toBe(0);
  expect(none.lines[none.lines.length - 1]).toBe("Skipped: none (every test ran)");
});

test("tests a name filter (-t) leaves out are not counted as skips, in CI or not", () => {
  const r = suite("filtered", { "e.test.js": `it("kept", () => undefined);\nit("left out", () => undefined);` })({ CI: "true" }, ["-t", "kept"]);
  expect(r.status).toBe(0);
  expect(r.lines[r.lines.length - 1]).toBe("Skipped: none (not counting the tests -t left out)");
});
