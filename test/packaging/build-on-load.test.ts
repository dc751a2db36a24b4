/**
 * An installed package with no prebuild for the libtorch found: the install (no compiler then)
 * explains and succeeds; later, with a compiler and cmake on PATH, the first require() builds
 * the addon from source with cmake-js, once, even when two programs start at the same time. That
 * build runs in files mode (libtorch's flags from scripts/gyp-torch.js, no find_package(Torch)).
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ROOT, Smoke, installEnv, makeApp, npmInstall, packStaged, parseSmoke, sh, stagePackage, toolchainFreeBin } from "../helpers/packaging";
import { describeUnless } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const prebuilds = require(path.join(ROOT, "scripts/lib/prebuilds.js"));

const libtorch = prebuilds.runtimeLibtorch();
const skipReason =
  !libtorch || libtorch.error ? "no libtorch found here" : prebuilds.missingToolchain().length ? `missing ${prebuilds.missingToolchain().join(", ")}` : null;
if (skipReason) process.stderr.write(`[packaging] SKIPPED the build-on-load test: ${skipReason}\n`);
const describeBuild = (title: string, body: () => void) => describeUnless(skipReason, title, body);

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the smoke script in `app`; resolves when it exits. */
function smokeRun(app: string, env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["smoke.js"], { cwd: app, env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

describeBuild("installed package without a fitting prebuild: built on first load", () => {
  let work: string;
  let app: string;
  let installedRoot: string;
  let installLog = "";
  const runs: Record<string, Run> = {};
  /** Whether the package had a build/ folder after each step (the later steps make one). */
  const hadBuild: Record<string, boolean> = {};

  beforeAll(async () => {
    sh(process.execPath, [path.join(ROOT, "scripts/setup.js")], { cwd: ROOT });
    work = makeTempDir("torch-lora-build-on-load-");
    const pkg = path.join(work, "pkg");
    stagePackage(pkg, (f) => !f.startsWith("prebuilds/"));
    const tgz = packStaged(pkg, work);
    app = makeApp(path.join(work, "app"));
    const noCompiler = installEnv(toolchainFreeBin(path.join(work, "bin")));
    installLog = npmInstall(app, tgz, noCompiler);
    installedRoot = path.join(app, "node_modules/torch-lora");
    const built = () => fs.existsSync(path.join(installedRoot, "build"));
    hadBuild.install = built();
    runs.noCompiler = await smokeRun(app, noCompiler);
    hadBuild.noCompiler = built();
    // The source build takes libtorch's flags from its files (scripts/gyp-torch.js), as it does by
    // default for a CUDA libtorch, so that way is compiled, loaded and run here too.
    const withCompiler = { ...installEnv(process.env.PATH ?? ""), TORCH_LORA_TORCH_FLAGS: "files" };
    runs.optedOut = await smokeRun(app, { ...withCompiler, TORCH_LORA_BUILD_ON_LOAD: "0" });
    hadBuild.optedOut = built();
    [runs.first, runs.second] = await Promise.all([smokeRun(app, withCompiler), smokeRun(app, withCompiler)]);
    runs.later = await smokeRun(app, withCompiler);
  }, 900_000);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test("the install, with no compiler, explains and leaves the package installed and unbuilt", () => {
    expect(installLog).toContain("torch-lora: no native addon fits this machine.");
    expect(installLog).toContain(`-> tag ${libtorch.tag}`);
    expect(hadBuild.install).toBe(false);
  });

  test("require() with no compiler on PATH fails with the explanation and builds nothing", () => {
    expect(runs.noCompiler.status).not.toBe(0);
    expect(runs.noCompiler.stderr).toContain("torch-lora: no native addon fits this machine.");
    expect(runs.noCompiler.stderr).not.toContain("building the addon from source");
    expect(hadBuild.noCompiler).toBe(false);
  });

  test("TORCH_LORA_BUILD_ON_LOAD=0 fails instead of building", () => {
    expect(runs.optedOut.status).not.toBe(0);
    expect(runs.optedOut.stderr).toContain("torch-lora: no native addon fits this machine.");
    expect(runs.optedOut.stderr).not.toContain("building the addon from source");
    expect(hadBuild.optedOut).toBe(false);
  });

  test("two programs started together: both announce a build, one compiles, both run LoRA on it", () => {
    const both = [runs.first, runs.second];
    for (const r of both) {
      expect({ status: r.status, stderr: r.status === 0 ? "" : r.stderr.slice(-3000) }).toEqual({ status: 0, stderr: "" });
      expect(r.stderr).toContain(`torch-lora: no prebuilt addon fits (libtorch ${libtorch.version}, tag ${libtorch.tag}); building the addon from source`);
    }
    const compiles = both.map((r) => (r.stdout + r.stderr).split("building the native addon against libtorch").length - 1);
    expect(compiles.sort()).toEqual([0, 1]);
    const built = fs.realpathSync(path.join(installedRoot, "build/Release/torch_lora.node"));
    for (const r of both) {
      const smoke: Smoke = parseSmoke(r.stdout);
      expect(smoke.addons).toEqual([built]);
      expect(smoke.stepZeroEqual).toBe(true);
      expect(smoke.adapterChangesOutput).toBe(true);
      expect(smoke.manualMaxDiff).toBeLessThan(1e-5);
      expect(smoke.unmergeExact).toBe(true);
    }
    expect(fs.existsSync(path.join(installedRoot, "build.lock"))).toBe(false);
  });

  test("that build took libtorch's flags from its files (TORCH_LORA_TORCH_FLAGS=files), not from find_package(Torch)", () => {
    const compiled = [runs.first, runs.second].map((r) => r.stdout + r.stderr).filter((out) => out.includes("building the native addon against libtorch"));
    expect(compiled).toHaveLength(1);
    expect(compiled[0]).toContain("libtorch build flags: files mode (TORCH_LORA_TORCH_FLAGS=files)");
    expect(compiled[0]).toContain("-- torch-lora: libtorch build flags from files mode");
    expect(compiled[0]).not.toContain("Found Torch");
    expect(JSON.parse(fs.readFileSync(path.join(installedRoot, "build/libtorch.json"), "utf8")).torchFlags).toBe("files");
  });

  test("a later program loads that build without building again", () => {
    expect(runs.later.status).toBe(0);
    expect(runs.later.stderr).not.toContain("building the addon from source");
    expect(parseSmoke(runs.later.stdout).addons).toEqual([fs.realpathSync(path.join(installedRoot, "build/Release/torch_lora.node"))]);
  });
});
