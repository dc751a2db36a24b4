/**
 * The loader when the best-fitting prebuild does not load (a broken file, missing libraries):
 * it tries the next prebuild that fits, and only then explains the first failure.
 */
import * as fs from "fs";
import * as path from "path";
import { BUILT_BINDING, ROOT, loadBinding, loaderPackage } from "../helpers/packaging";
import { describeUnless } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const prebuilds = require(path.join(ROOT, "scripts/lib/prebuilds.js"));

const libtorch = prebuilds.runtimeLibtorch();
const addon = path.join(ROOT, "build/Release/torch_lora.node");
const skipReason =
  !libtorch || libtorch.error ? "no libtorch found here" : !fs.existsSync(addon) || !fs.existsSync(BUILT_BINDING) ? "not built (node scripts/setup.js)" : null;
if (skipReason) process.stderr.write(`[packaging] SKIPPED the prebuild fallback test: ${skipReason}\n`);
const describeFallback = (title: string, body: () => void) => describeUnless(skipReason, title, body);

describeFallback("a prebuild that fits but does not load", () => {
  let work: string;
  const node = process.versions.node;
  const base = { platform: process.platform, arch: process.arch, libc: "glibc", tag: libtorch?.tag };
  // Experimental for this very Node, so it is tried first; then the stable one.
  const broken = {
    ...base,
    file: `${process.platform}-${process.arch}/broken.node`,
    napi: "experimental",
    nodeMajor: Number(node.split(".")[0]),
    nodeVersion: node,
  };
  const working = { ...base, file: `${process.platform}-${process.arch}/working.node`, napi: 8 };

  /** An installed package (no local build) shipping `entries`; the working one is this machine's addon. */
  function installedWith(name: string, entries: Array<typeof broken | typeof working>): string {
    const pkg = loaderPackage(path.join(work, name, "node_modules/torch-lora"));
    fs.mkdirSync(path.join(pkg, `prebuilds/${process.platform}-${process.arch}`), { recursive: true });
    fs.writeFileSync(path.join(pkg, "prebuilds", broken.file), "not a shared library\n".repeat(20));
    fs.copyFileSync(addon, path.join(pkg, "prebuilds", working.file));
    fs.writeFileSync(path.join(pkg, "prebuilds/prebuild-manifest.json"), JSON.stringify({ prebuilds: entries }));
    return pkg;
  }

  function load(pkg: string) {
    const env: NodeJS.ProcessEnv = { ...process.env, TORCH_LORA_BUILD_ON_LOAD: "0" };
    delete env.TORCH_LORA_ADDON;
    return loadBinding(pkg, env);
  }

  beforeAll(() => {
    work = makeTempDir("torch-lora-fallback-");
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test("both fit, the preferred one is broken: the next one is loaded", () => {
    const pkg = installedWith("both", [working, broken]);
    expect(prebuilds.fittingPrebuilds(pkg, libtorch).map((f: string) => path.basename(f))).toEqual(["broken.node", "working.node"]);
    const r = load(pkg);
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
    expect(r.stdout.trim()).toBe(path.join(pkg, "prebuilds", working.file));
  });

  test("only the broken one fits: the error names it and what the dynamic loader said", () => {
    const pkg = installedWith("only-broken", [broken]);
    const r = load(pkg);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(
      `torch-lora: the native addon ${path.join(pkg, "prebuilds", broken.file)} does not match the libtorch or system it is loaded on`,
    );
    expect(r.stderr).toContain("invalid ELF header");
    expect(r.stderr).toContain(`node ${path.join(pkg, "scripts/install.js")} --build`);
  });
});
