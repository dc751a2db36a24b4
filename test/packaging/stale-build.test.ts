/**
 * An installed package whose local build was made for one libtorch, loaded while LIBTORCH /
 * Torch_DIR name another: the loader does not use that build (it would keep running on the old
 * libtorch, e.g. without CUDA after a switch to a CUDA libtorch).
 */
import * as fs from "fs";
import * as path from "path";
import { BUILT_BINDING, ROOT, loadBinding, loaderPackage } from "../helpers/packaging";
import { describeUnless } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const { findLibtorch } = require(path.join(ROOT, "scripts/lib/find-libtorch.js"));

const here = findLibtorch();
const addon = path.join(ROOT, "build/Release/torch_lora.node");
const skipReason = !here ? "no libtorch found here" : !fs.existsSync(addon) || !fs.existsSync(BUILT_BINDING) ? "not built (node scripts/setup.js)" : null;
if (skipReason) process.stderr.write(`[packaging] SKIPPED the stale-build test: ${skipReason}\n`);
const describeStale = (title: string, body: () => void) => describeUnless(skipReason, title, body);

describeStale("a local build made for another libtorch than the one named now", () => {
  let work: string;
  let pkg: string;

  /** An installed package holding this machine's addon as its local build, stamped as built for `torchDir`. */
  function installedWithBuildFor(torchDir: string): void {
    loaderPackage(pkg);
    fs.mkdirSync(path.join(pkg, "build/Release"), { recursive: true });
    fs.copyFileSync(addon, path.join(pkg, "build/Release/torch_lora.node"));
    fs.writeFileSync(path.join(pkg, "build/libtorch.json"), JSON.stringify({ torchDir }));
  }

  const load = (env: NodeJS.ProcessEnv) => loadBinding(pkg, { PATH: process.env.PATH, TORCH_LORA_BUILD_ON_LOAD: "0", ...env });

  beforeAll(() => {
    work = makeTempDir("torch-lora-stale-");
    pkg = path.join(work, "app/node_modules/torch-lora");
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test("Torch_DIR naming the libtorch it was built for: the local build loads", () => {
    installedWithBuildFor(here.torchDir);
    const r = load({ Torch_DIR: here.torchDir });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
    expect(r.stdout.trim()).toBe(path.join(pkg, "build/Release/torch_lora.node"));
  });

  test("no libtorch variable set: the local build loads without any discovery", () => {
    installedWithBuildFor("/opt/elsewhere/share/cmake/Torch");
    const r = load({});
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(path.join(pkg, "build/Release/torch_lora.node"));
  });

  test("Torch_DIR naming another libtorch: the local build is passed over, and the error says why", () => {
    installedWithBuildFor("/opt/elsewhere/share/cmake/Torch");
    const r = load({ Torch_DIR: here.torchDir });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("torch-lora: no native addon fits this machine.");
    expect(r.stderr).toContain(`the local build was made for the libtorch at /opt/elsewhere/share/cmake/Torch, but Torch_DIR now names ${here.torchDir}`);
  });
});
