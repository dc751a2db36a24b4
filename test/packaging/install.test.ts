/**
 * The published package as a user gets it: `npm pack`, install the tarball into a fresh project
 * with no compiler on PATH, and run a LoRA round trip there on the prebuilt addon.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ROOT, Smoke, installEnv, makeApp, npmInstall, packStaged, parseSmoke, sh, stagePackage, toolchainFreeBin } from "../helpers/packaging";
import { describeUnless } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const prebuilds = require(path.join(ROOT, "scripts/lib/prebuilds.js"));

const libtorch = prebuilds.runtimeLibtorch();
const localBuild = path.join(ROOT, "build/Release/torch_lora.node");
const skipReason =
  !libtorch || libtorch.error
    ? "no libtorch found here"
    : !fs.existsSync(localBuild) && !prebuilds.selectPrebuild(ROOT, libtorch)
      ? "no local build to make a prebuild from (run node scripts/setup.js)"
      : null;
const describeInstall = (title: string, body: () => void) => describeUnless(skipReason, title, body);
// Straight to stderr: jest does not show console output of a file whose tests all skip.
if (skipReason) process.stderr.write(`[packaging] SKIPPED the install test: ${skipReason}\n`);

describeInstall("installed package (npm pack → npm install, no compiler on PATH)", () => {
  let work: string;
  let installLog = "";
  let smoke: Smoke;
  let installedRoot: string;
  /** The prebuild the staged package should use here (relative to prebuilds/), by its manifest. */
  let expectedFile: string;

  beforeAll(() => {
    // dist/ is what ships: bring it up to date with lib/ (a no-op after `npm test`'s pretest).
    sh(process.execPath, [path.join(ROOT, "scripts/setup.js")], { cwd: ROOT });
    work = makeTempDir("torch-lora-install-");
    const pkg = path.join(work, "pkg");
    const shipped = stagePackage(pkg);
    // A prebuild from `npm run prebuild` of the current sources is shipped as is; else
    // (none, or one left from older sources) the local cmake-js build, linked the same way, is
    // packaged as the prebuild for this libtorch.
    const current = prebuilds
      .readManifest(ROOT)
      .some((e: { tag: string; sourceHash?: string }) => e.tag === libtorch.tag && e.sourceHash === prebuilds.nativeSourceHash(ROOT));
    if (!current || !shipped.some((f) => f.startsWith("prebuilds/") && f.includes(libtorch.tag))) {
      sh(process.execPath, [path.join(ROOT, "scripts/prebuild.js"), "--from-build", "--out", pkg]);
    }
    const chosen = prebuilds.selectPrebuild(pkg, libtorch);
    expectedFile = chosen ? path.relative(path.join(pkg, "prebuilds"), chosen) : "(none fits)";
    const tgz = packStaged(pkg, work);
    const app = makeApp(path.join(work, "app"));
    const env = installEnv(toolchainFreeBin(path.join(work, "bin")));
    installLog = npmInstall(app, tgz, env);
    installedRoot = path.join(app, "node_modules/torch-lora");
    smoke = parseSmoke(sh("node", ["smoke.js"], { cwd: app, env }));
  }, 170000);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test("the compiler really is hidden from the install", () => {
    const env = { PATH: path.join(work, "bin") };
    for (const tool of ["cc", "c++", "g++", "cmake", "make"]) {
      expect(spawnSync("sh", ["-c", `command -v ${tool}`], { env, encoding: "utf8" }).status).not.toBe(0);
    }
    expect(prebuilds.missingToolchain(env)).toHaveLength(2);
  });

  test("the install step picks the prebuild tagged for the libtorch found, and builds nothing", () => {
    expect(installLog).toContain(`-> tag ${libtorch.tag}`);
    // The stable build (N-API 8), or the experimental one made by this Node major, which is preferred.
    const forThisNode = `linux-x64/torch-lora.${libtorch.tag}.napi.node${process.versions.node.split(".")[0]}.glibc.node`;
    const stable = `linux-x64/torch-lora.${libtorch.tag}.napi.glibc.node`;
    const shipped = prebuilds.readManifest(path.join(work, "pkg")).map((e: { file: string }) => e.file);
    expect(expectedFile).toBe(shipped.includes(forThisNode) ? forThisNode : stable);
    expect(installLog).toContain(`using the prebuilt addon prebuilds/${expectedFile}`);
    expect(fs.existsSync(path.join(installedRoot, "build"))).toBe(false);
  });

  test("the installed package loads that prebuild and no other addon", () => {
    const expected = fs.realpathSync(path.join(installedRoot, "prebuilds", expectedFile));
    expect(smoke.addons).toEqual([expected]);
  });

  test("LoRA through the installed package: no-op at step 0, matches a second code path", () => {
    expect(smoke.stepZeroEqual).toBe(true);
    expect(smoke.adapterChangesOutput).toBe(true);
    expect(smoke.manualMaxDiff).toBeLessThan(1e-5);
  });

  test("merge keeps the output and unmerge restores every weight bit for bit", () => {
    expect(smoke.mergedChangedWeights).toBe(true);
    expect(smoke.mergedMaxDiff).toBeLessThan(1e-5);
    expect(smoke.unmergeExact).toBe(true);
  });
});
