/**
 * libtorch description, prebuild tags and selection, and the loader's error when nothing fits.
 * Fake libtorch trees stand in for the distributions this machine does not have.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { BUILT_BINDING, loadBinding, loaderPackage } from "../helpers/packaging";
import { NOT_BUILT, itUnless } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const ROOT = path.resolve(__dirname, "../..");
const findLibtorch = require(path.join(ROOT, "scripts/lib/find-libtorch.js"));
const prebuilds = require(path.join(ROOT, "scripts/lib/prebuilds.js"));

/** Why the tests that load dist/ cannot run here, or null when it is built. */
const distMissing = fs.existsSync(BUILT_BINDING) ? null : NOT_BUILT;

let tmp: string;
beforeAll(() => {
  tmp = makeTempDir("torch-lora-loader-");
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Writes files (relative path -> content) under a new folder and returns it. */
function tree(name: string, files: Record<string, string>): string {
  const dir = path.join(tmp, name);
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

const config = (abi: 0 | 1) =>
  `get_filename_component(TORCH_INSTALL_PREFIX "\${CMAKE_CURRENT_LIST_DIR}/../../../" ABSOLUTE)\n` +
  `if(CMAKE_SYSTEM_NAME STREQUAL "Linux")\n  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=${abi}")\nendif()\n`;

describe("describeLibtorch", () => {
  test("an unpacked CUDA distribution: version, cu121 from build-version, ABI 1, lib dir", () => {
    const dir = tree("libtorch-cu121", {
      "share/cmake/Torch/TorchConfig.cmake": config(1),
      "share/cmake/Torch/TorchConfigVersion.cmake": 'set(PACKAGE_VERSION "2.1.0")\n',
      "build-version": "2.1.0+cu121\n",
      "lib/libtorch.so": "",
      "lib/libtorch_cuda.so": "",
    });
    const d = findLibtorch.describeLibtorch(path.join(dir, "share/cmake/Torch"));
    expect(d).toMatchObject({
      version: "2.1.0",
      cuda: true,
      cudaVersion: "12.1",
      variant: "cu121",
      cxx11Abi: true,
      prefix: dir,
      libDir: path.join(dir, "lib"),
    });
    expect(d.includeDirs).toEqual([path.join(dir, "include"), path.join(dir, "include/torch/csrc/api/include")]);
    expect(findLibtorch.libtorchTag(d)).toBe("torch2_1_0-cu121-cxx11abi1");
  });

  test("Python's torch: CUDA version from torch/version.py, the old ABI from TorchConfig.cmake", () => {
    const dir = tree("site-packages/torch", {
      "share/cmake/Torch/TorchConfig.cmake": config(0),
      "share/cmake/Torch/TorchConfigVersion.cmake": 'set(PACKAGE_VERSION "2.3.1")\n',
      "version.py": "__version__ = '2.3.1+cu118'\ndebug = False\ncuda: Optional[str] = '11.8'\n",
      "lib/libtorch.so": "",
      "lib/libtorch_cuda.so": "",
    });
    const d = findLibtorch.describeLibtorch(path.join(dir, "share/cmake/Torch"));
    expect(findLibtorch.libtorchTag(d)).toBe("torch2_3_1-cu118-cxx11abi0");
  });

  test("a CPU wheel (version.py says cuda = None) is cpu", () => {
    const dir = tree("cpu-wheel/torch", {
      "share/cmake/Torch/TorchConfig.cmake": config(0),
      "share/cmake/Torch/TorchConfigVersion.cmake": 'set(PACKAGE_VERSION "2.2.0")\n',
      "version.py": "__version__ = '2.2.0+cpu'\ncuda: Optional[str] = None\n",
      "lib/libtorch.so": "",
    });
    expect(findLibtorch.libtorchTag(findLibtorch.describeLibtorch(path.join(dir, "share/cmake/Torch")))).toBe("torch2_2_0-cpu-cxx11abi0");
  });

  const runtime = prebuilds.runtimeLibtorch();
  itUnless(!runtime || runtime.error ? "no libtorch found" : null, "the libtorch found here agrees with the addon built against it", () => {
    const { native } = require("../../lib/binding");
    expect(prebuilds.tagOfBuildInfo(native.buildInfo())).toBe(runtime.tag);
  });
});

/** A TorchConfig.cmake as PyTorch >= 2.8 writes it: the install prefix, and no ABI line at all. */
const configWithoutAbi =
  `get_filename_component(TORCH_INSTALL_PREFIX "\${CMAKE_CURRENT_LIST_DIR}/../../../" ABSOLUTE)\n` +
  `if(TORCH_CXX_FLAGS)\n  set_property(TARGET torch PROPERTY INTERFACE_COMPILE_OPTIONS "\${TORCH_CXX_FLAGS}")\nendif()\n`;

/** torch/version.py as the wheels of 2.5 and later write it (hip and xpu lines; 'cuda' inside __all__). */
const versionPy = (version: string, cuda: string | null) =>
  `from typing import Optional\n\n__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'xpu']\n` +
  `__version__ = '${version}'\ndebug = False\ncuda: Optional[str] = ${cuda === null ? "None" : `'${cuda}'`}\n` +
  `git_version = '0123456789abcdef0123456789abcdef01234567'\nhip: Optional[str] = None\nxpu: Optional[str] = None\n`;

/** Runs scripts/gyp-torch.js with `args` and no discovery hints in the environment. */
function gypTorch(...args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "scripts/gyp-torch.js"), ...args], { env: { PATH: "" }, encoding: "utf8" });
  return { status: r.status, out: r.stdout.trim(), err: r.stderr };
}

describe("PyTorch 2.x layouts", () => {
  let wheel: string;
  let cpuZip: string;
  let oldAbiWheel: string;
  beforeAll(() => {
    wheel = tree("py313/site-packages/torch", {
      "share/cmake/Torch/TorchConfig.cmake": configWithoutAbi,
      "share/cmake/Torch/TorchConfigVersion.cmake": 'set(PACKAGE_VERSION "2.9.0")\n',
      "version.py": versionPy("2.9.0+cu130", "13.0"),
      "lib/libtorch.so": "",
      "lib/libtorch_cpu.so": "",
      "lib/libtorch_cuda.so": "",
      "lib/libtorch_cuda_linalg.so": "",
      "lib/libc10.so": "",
      "lib/libc10_cuda.so": "",
    });
    cpuZip = tree("libtorch-2.4-cpu", {
      "share/cmake/Torch/TorchConfig.cmake": config(1),
      "share/cmake/Torch/TorchConfigVersion.cmake": 'set(PACKAGE_VERSION "2.4.1")\n',
      "build-version": "2.4.1+cpu\n",
      "build-hash": "ee1b6804381c57161c477caa380a840a84167676\n",
      "lib/libtorch.so": "",
      "lib/libtorch_cpu.so": "",
    });
    oldAbiWheel = tree("py310/site-packages/torch", {
      "share/cmake/Torch/TorchConfig.cmake": config(0),
      "share/cmake/Torch/TorchConfigVersion.cmake": 'set(PACKAGE_VERSION "2.6.0")\n',
      "version.py": versionPy("2.6.0+cu126", "12.6"),
      "lib/libtorch.so": "",
      "lib/libtorch_cuda.so": "",
    });
  });

  test("a 2.9 CUDA 13.0 wheel whose TorchConfig.cmake states no ABI is cxx11abi1, cu130", () => {
    const d = findLibtorch.describeLibtorch(path.join(wheel, "share/cmake/Torch"));
    expect(d).toMatchObject({
      version: "2.9.0",
      cuda: true,
      cudaVersion: "13.0",
      variant: "cu130",
      cxx11Abi: true,
      prefix: wheel,
      libDir: path.join(wheel, "lib"),
    });
    expect(findLibtorch.libtorchTag(d)).toBe("torch2_9_0-cu130-cxx11abi1");
  });

  test("a CPU libtorch zip (build-version 2.4.1+cpu) is cpu", () => {
    const d = findLibtorch.describeLibtorch(path.join(cpuZip, "share/cmake/Torch"));
    expect(d).toMatchObject({ cuda: false, cudaVersion: null, variant: "cpu" });
    expect(findLibtorch.libtorchTag(d)).toBe("torch2_4_1-cpu-cxx11abi1");
  });

  test("gyp-torch.js describes the TorchConfig folder it is given, and its built-with maps back to the same tag", () => {
    for (const [dir, builtWith, abiDefine] of [
      [wheel, "2.9.0-cuda13.0", "_GLIBCXX_USE_CXX11_ABI=1"],
      [oldAbiWheel, "2.6.0-cuda12.6", "_GLIBCXX_USE_CXX11_ABI=0"],
      [cpuZip, "2.4.1-cpu", "_GLIBCXX_USE_CXX11_ABI=1"],
    ]) {
      const torchDir = path.join(dir, "share/cmake/Torch");
      expect(gypTorch("built-with", torchDir)).toMatchObject({ status: 0, out: builtWith });
      expect(gypTorch("abi-define", torchDir).out).toBe(abiDefine);
      const d = findLibtorch.describeLibtorch(torchDir);
      // The addon records builtWith (CMake and gyp builds alike); the loader compares its tag with the libtorch's.
      expect(prebuilds.tagOfBuildInfo({ builtWith, torchVersion: d.version, cxx11Abi: abiDefine.endsWith("=1") })).toBe(findLibtorch.libtorchTag(d));
    }
  });

  test("gyp-torch.js links libtorch_cuda and libc10_cuda with --no-as-needed (pushed and popped) only for CUDA builds", () => {
    const cuda = gypTorch("ldflags", path.join(wheel, "share/cmake/Torch"));
    expect(cuda.out.split(" ")).toEqual([
      `-Wl,-rpath,${path.join(wheel, "lib")}`,
      "-Wl,--push-state,--no-as-needed",
      "-ltorch_cuda",
      "-lc10_cuda",
      "-Wl,--pop-state",
    ]);
    expect(gypTorch("ldflags", path.join(cpuZip, "share/cmake/Torch")).out).toBe(`-Wl,-rpath,${path.join(cpuZip, "lib")}`);
    expect(gypTorch("libraries", path.join(cpuZip, "share/cmake/Torch")).out).toBe(`-L${path.join(cpuZip, "lib")} -ltorch -ltorch_cpu -lc10`);
    expect(gypTorch("include-dirs", path.join(wheel, "share/cmake/Torch")).out).toBe(
      `${path.join(wheel, "include")} ${path.join(wheel, "include/torch/csrc/api/include")}`,
    );
  });

  test("gyp-torch.js refuses a folder without TorchConfig.cmake, naming it", () => {
    const r = gypTorch("built-with", path.join(wheel, "lib"));
    expect(r.status).not.toBe(0);
    expect(r.err).toContain(`${path.join(wheel, "lib")} holds no TorchConfig.cmake`);
  });
});

describe("tagOfBuildInfo", () => {
  test("reads the variant from builtWith and the ABI from the addon", () => {
    expect(prebuilds.tagOfBuildInfo({ builtWith: "1.13.0-cpu", torchVersion: "1.13.0", cxx11Abi: true })).toBe("torch1_13_0-cpu-cxx11abi1");
    expect(prebuilds.tagOfBuildInfo({ builtWith: "2.4.0-cuda12.4", torchVersion: "2.4.0", cxx11Abi: false })).toBe("torch2_4_0-cu124-cxx11abi0");
    expect(() => prebuilds.tagOfBuildInfo({ builtWith: "weird", torchVersion: "1", cxx11Abi: true })).toThrow(/builtWith/);
  });
});

describe("selectPrebuild", () => {
  const host = { platform: "linux", arch: "x64", libc: "glibc", napi: 9 };
  const entry = (tag: string, extra: object = {}) => ({
    file: `linux-x64/torch-lora.${tag}.napi.glibc.node`,
    platform: "linux",
    arch: "x64",
    libc: "glibc",
    napi: 8,
    tag,
    ...extra,
  });
  let root: string;
  beforeAll(() => {
    root = path.join(tmp, "pkg");
    for (const e of [entry("torch1_13_0-cpu-cxx11abi1"), entry("torch2_1_0-cu121-cxx11abi0"), entry("torch2_1_0-cpu-cxx11abi0", { libc: "musl" })]) {
      prebuilds.writeManifestEntry(root, e);
    }
  });

  test("picks the entry whose tag equals the libtorch's", () => {
    expect(prebuilds.selectPrebuild(root, { tag: "torch2_1_0-cu121-cxx11abi0" }, host)).toBe(
      path.join(root, "prebuilds/linux-x64/torch-lora.torch2_1_0-cu121-cxx11abi0.napi.glibc.node"),
    );
  });

  test("a different ABI, CUDA version, libc, arch or too old a Node-API picks nothing", () => {
    expect(prebuilds.selectPrebuild(root, { tag: "torch2_1_0-cu121-cxx11abi1" }, host)).toBeNull();
    expect(prebuilds.selectPrebuild(root, { tag: "torch2_1_0-cu118-cxx11abi0" }, host)).toBeNull();
    expect(prebuilds.selectPrebuild(root, { tag: "torch2_1_0-cpu-cxx11abi0" }, host)).toBeNull();
    expect(prebuilds.selectPrebuild(root, { tag: "torch1_13_0-cpu-cxx11abi1" }, { ...host, arch: "arm64" })).toBeNull();
    expect(prebuilds.selectPrebuild(root, { tag: "torch1_13_0-cpu-cxx11abi1" }, { ...host, napi: 7 })).toBeNull();
    expect(prebuilds.selectPrebuild(root, null, host)).toBeNull();
  });

  test("the manifest keeps one entry per file", () => {
    prebuilds.writeManifestEntry(root, entry("torch1_13_0-cpu-cxx11abi1", { torchVersion: "1.13.0" }));
    const entries = prebuilds.readManifest(root);
    expect(entries.map((e: { tag: string }) => e.tag).sort()).toEqual(["torch1_13_0-cpu-cxx11abi1", "torch2_1_0-cpu-cxx11abi0", "torch2_1_0-cu121-cxx11abi0"]);
    expect(entries.find((e: { tag: string }) => e.tag === "torch1_13_0-cpu-cxx11abi1").torchVersion).toBe("1.13.0");
  });

  test("the no-addon message names the libtorch found, the prebuilds shipped and the fixes", () => {
    const lt = {
      version: "2.1.0",
      variant: "cu118",
      cuda: true,
      cudaVersion: "11.8",
      cxx11Abi: false,
      torchDir: "/opt/t/share/cmake/Torch",
      source: "LIBTORCH",
      tag: "torch2_1_0-cu118-cxx11abi0",
    };
    const noTools = prebuilds.noAddonMessage(root, lt, { PATH: path.join(tmp, "empty-bin") });
    expect(noTools).toContain(
      "libtorch 2.1.0 (CUDA 11.8, _GLIBCXX_USE_CXX11_ABI=0) at /opt/t/share/cmake/Torch [found via LIBTORCH] -> tag torch2_1_0-cu118-cxx11abi0",
    );
    expect(noTools).toContain("linux-x64/torch-lora.torch2_1_0-cu121-cxx11abi0.napi.glibc.node");
    expect(noTools).toContain("install a C++17 compiler (g++ or clang++) and cmake >= 3.18");
    expect(noTools).toContain("apt-get install libtorch-dev");
    expect(prebuilds.noAddonMessage(root, null, { PATH: "" })).toContain("no libtorch found");
  });
});

describe("Node-API variants: stable (N-API 8) and experimental (one Node major)", () => {
  const TAG = "torch1_13_0-cpu-cxx11abi1";
  const stable = { file: `linux-x64/torch-lora.${TAG}.napi.glibc.node`, platform: "linux", arch: "x64", libc: "glibc", napi: 8, tag: TAG };
  const exp20 = { ...stable, file: `linux-x64/torch-lora.${TAG}.napi.node20.glibc.node`, napi: "experimental", nodeMajor: 20, nodeVersion: "20.10.0" };
  const exp22 = { ...stable, file: `linux-x64/torch-lora.${TAG}.napi.node22.glibc.node`, napi: "experimental", nodeMajor: 22, nodeVersion: "22.3.0" };
  const host = (node: string, napi = 9) => ({ platform: "linux", arch: "x64", libc: "glibc", napi, node });
  const lt = { tag: TAG };
  /** A package folder whose manifest holds `entries`, written in the order given. */
  const pkg = (name: string, entries: object[]) => {
    const root = path.join(tmp, name);
    for (const e of entries) prebuilds.writeManifestEntry(root, e);
    return root;
  };
  const picked = (root: string, h: object) => {
    const file = prebuilds.selectPrebuild(root, lt, h);
    return file === null ? null : path.relative(path.join(root, "prebuilds"), file);
  };

  test("the manifest fields come from buildInfo(): N-API 8, or experimental with the Node it was compiled against", () => {
    expect(prebuilds.napiOfBuildInfo({ napiExperimental: false, napiVersion: 8 })).toEqual({ napi: 8 });
    expect(prebuilds.napiOfBuildInfo({ napiExperimental: true, napiVersion: 2147483647, nodeVersion: "20.18.1" }, "22.0.0")).toEqual({
      napi: "experimental",
      nodeMajor: 20,
      nodeVersion: "20.18.1",
    });
    // Headers without node_version.h: the running Node is recorded instead.
    expect(prebuilds.napiOfBuildInfo({ napiExperimental: true, napiVersion: 2147483647 }, "21.7.3")).toEqual({
      napi: "experimental",
      nodeMajor: 21,
      nodeVersion: "21.7.3",
    });
    expect(() => prebuilds.napiOfBuildInfo({ builtWith: "1.13.0-cpu" })).toThrow(/napiExperimental.*rebuild it/);
    expect(() => prebuilds.napiOfBuildInfo({ napiExperimental: false, napiVersion: 2147483647 })).toThrow(/napiVersion 2147483647/);
  });

  test("file names: prebuildify's scheme, with a node<major> marker for the experimental build", () => {
    expect(prebuilds.prebuildFile(TAG, "glibc", { napi: 8 }, "linux", "x64")).toBe(stable.file);
    expect(prebuilds.prebuildFile(TAG, "glibc", { napi: "experimental", nodeMajor: 20 }, "linux", "x64")).toBe(exp20.file);
    expect(prebuilds.prebuildFile(TAG, "musl", { napi: "experimental", nodeMajor: 22 }, "linux", "arm64")).toBe(
      `linux-arm64/torch-lora.${TAG}.napi.node22.musl.node`,
    );
  });

  test("an experimental build is chosen on its own Node major, in either manifest order", () => {
    for (const [name, entries] of [
      ["both-a", [stable, exp20]],
      ["both-b", [exp20, stable]],
    ] as const) {
      const root = pkg(name, [...entries]);
      expect(picked(root, host("20.10.0"))).toBe(exp20.file);
      expect(picked(root, host("20.18.1"))).toBe(exp20.file);
    }
  });

  test("fittingPrebuilds lists the experimental build first and the stable one next, as fallback", () => {
    const root = pkg("both-d", [stable, exp20]);
    const files = (h: ReturnType<typeof host>) => prebuilds.fittingPrebuilds(root, lt, h).map((f: string) => path.relative(path.join(root, "prebuilds"), f));
    expect(files(host("20.10.0"))).toEqual([exp20.file, stable.file]);
    expect(files(host("22.3.0"))).toEqual([stable.file]);
  });

  test("on another Node major, or an older release of the same one, the stable build is chosen", () => {
    const root = pkg("both-c", [exp20, stable]);
    expect(picked(root, host("22.3.0"))).toBe(stable.file);
    expect(picked(root, host("18.19.0"))).toBe(stable.file);
    // 20.9 lacks node_api_post_finalizer, which a build from 20.10 headers imports.
    expect(picked(root, host("20.9.0"))).toBe(stable.file);
    // A host that does not say which Node it is gets the stable build.
    expect(prebuilds.selectPrebuild(root, lt, { platform: "linux", arch: "x64", libc: "glibc", napi: 9 })).toBe(path.join(root, "prebuilds", stable.file));
  });

  test("an experimental build alone is refused on another major; the stable one still needs Node-API 8", () => {
    const onlyExp = pkg("only-exp", [exp20]);
    expect(picked(onlyExp, host("20.11.1"))).toBe(exp20.file);
    expect(picked(onlyExp, host("22.3.0"))).toBeNull();
    expect(picked(onlyExp, host("21.0.0"))).toBeNull();
    expect(picked(onlyExp, host("20.9.0"))).toBeNull();
    const onlyStable = pkg("only-stable", [stable]);
    expect(picked(onlyStable, host("20.11.1"))).toBe(stable.file);
    expect(picked(onlyStable, host("16.0.0", 7))).toBeNull();
  });

  test("several experimental builds: each Node major gets its own, others the stable one", () => {
    const root = pkg("many", [stable, exp20, exp22]);
    expect(picked(root, host("20.12.0"))).toBe(exp20.file);
    expect(picked(root, host("22.4.0"))).toBe(exp22.file);
    expect(picked(root, host("23.1.0"))).toBe(stable.file);
    // libtorch, platform and libc still have to match whatever the Node-API kind.
    expect(prebuilds.selectPrebuild(root, { tag: "torch2_1_0-cpu-cxx11abi1" }, host("20.12.0"))).toBeNull();
    expect(prebuilds.selectPrebuild(root, lt, { ...host("20.12.0"), libc: "musl" })).toBeNull();
  });

  test("the no-addon message names each prebuild's Node-API kind", () => {
    const root = pkg("message", [stable, exp20]);
    const msg = prebuilds.noAddonMessage(root, { ...lt, error: "LIBTORCH=/nowhere holds no libtorch" }, { PATH: "" });
    expect(msg).toContain(`    ${stable.file}  (linux-x64 glibc, N-API 8, ${TAG})`);
    expect(msg).toContain(`    ${exp20.file}  (linux-x64 glibc, experimental N-API, Node 20 only, from 20.10.0, ${TAG})`);
  });

  test("gyp-torch.js napi-define: TORCH_LORA_NAPI=stable forces NAPI_VERSION=8, other values are refused", () => {
    const run = (value: string) =>
      spawnSync(process.execPath, [path.join(ROOT, "scripts/gyp-torch.js"), "napi-define"], { env: { PATH: "", TORCH_LORA_NAPI: value }, encoding: "utf8" });
    expect(run("stable").stdout.trim()).toBe("NAPI_VERSION=8");
    const header = path.resolve(process.execPath, "../../include/node/js_native_api.h");
    const offers = fs.existsSync(header) && fs.readFileSync(header, "utf8").includes("NODE_API_EXPERIMENTAL_HAS_POST_FINALIZER");
    expect(run("auto").stdout.trim()).toBe(offers ? "NAPI_EXPERIMENTAL" : "NAPI_VERSION=8");
    const bad = run("9");
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('TORCH_LORA_NAPI=9 is not understood: use "stable" (NAPI_VERSION=8) or "auto"');
  });

  const local = path.join(ROOT, "build/Release/torch_lora.node");
  /** The prebuilds `npm run prebuild` made here that are on disk, with their manifest's Node-API kind. */
  const builtPrebuilds = (prebuilds.readManifest(ROOT) as { file: string; napi: number | string }[]).filter((e) =>
    fs.existsSync(path.join(ROOT, "prebuilds", e.file)),
  );
  const symbolsSkip =
    spawnSync("nm", ["--version"]).status !== 0 ? "no nm (apt-get install binutils)" : fs.existsSync(local) || builtPrebuilds.length > 0 ? null : NOT_BUILT;
  itUnless(symbolsSkip, "buildInfo().napiExperimental agrees with the experimental symbols the built files import", () => {
    const importsPostFinalizer = (file: string) => / U node_api_post_finalizer\b/.test(spawnSync("nm", ["-D", file], { encoding: "utf8" }).stdout);
    if (fs.existsSync(local)) {
      const info = require(local).buildInfo();
      expect(importsPostFinalizer(local)).toBe(info.napiExperimental);
      expect(info.napiVersion).toBe(info.napiExperimental ? 2147483647 : 8);
    }
    // Prebuilds made here by `npm run prebuild`: the manifest's kind matches each file.
    for (const e of builtPrebuilds) {
      expect([e.file, importsPostFinalizer(path.join(ROOT, "prebuilds", e.file))]).toEqual([e.file, e.napi === "experimental"]);
    }
  });
});

describe("the loader in a package without a fitting addon", () => {
  itUnless(distMissing, "fails with the libtorch found, the prebuilds (none) and what to do", () => {
    const pkg = loaderPackage(path.join(tmp, "bare"));
    const r = loadBinding(pkg, { PATH: "", LIBTORCH: path.join(tmp, "libtorch-cu121") });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("torch-lora: no native addon fits this machine.");
    expect(r.stderr).toContain("libtorch 2.1.0 (CUDA 12.1, _GLIBCXX_USE_CXX11_ABI=1)");
    expect(r.stderr).toContain("[found via LIBTORCH] -> tag torch2_1_0-cu121-cxx11abi1");
    expect(r.stderr).toMatch(/prebuilt addons in this package .*:\n {4}none/);
    expect(r.stderr).toContain("scripts/install.js --build");
  });

  itUnless(distMissing, "an addon that is not a loadable library: the cause, and how to rebuild in a clone and in an installed package", () => {
    const bogus = path.join(tmp, "bogus.node");
    fs.writeFileSync(bogus, "not an ELF file\n".repeat(20));
    const load = (pkg: string) => loadBinding(pkg, { ...process.env, TORCH_LORA_ADDON: bogus });
    const inClone = load(ROOT);
    expect(inClone.status).not.toBe(0);
    expect(inClone.stderr).toContain(`torch-lora: the native addon ${bogus} does not match the libtorch or system it is loaded on`);
    expect(inClone.stderr).toContain("Rebuild it against the libtorch you have: npm run rebuild");
    const installed = loaderPackage(path.join(tmp, "app/node_modules/torch-lora"));
    const inPackage = load(installed);
    expect(inPackage.stderr).toContain(`Rebuild it against the libtorch you have: node ${path.join(installed, "scripts/install.js")} --build`);
  });

  itUnless(distMissing, "TORCH_LORA_ADDON pointing nowhere is named in the error", () => {
    const r = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(path.join(ROOT, "dist/lib/binding.js"))})`], {
      env: { ...process.env, TORCH_LORA_ADDON: "/nonexistent/torch_lora.node" },
      encoding: "utf8",
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("TORCH_LORA_ADDON=/nonexistent/torch_lora.node does not exist");
  });
});

describe("prebuild.js --check (npm pack runs it)", () => {
  const check = (out: string) => spawnSync(process.execPath, [path.join(ROOT, "scripts/prebuild.js"), "--check", "--out", out], { encoding: "utf8" });
  const withManifest = (name: string, entries: Array<{ file: string; sourceHash?: string }>, files: string[]) => {
    const out = tree(name, Object.fromEntries(files.map((f) => [`prebuilds/${f}`, "addon"])));
    fs.mkdirSync(path.join(out, "prebuilds"), { recursive: true });
    fs.writeFileSync(path.join(out, "prebuilds/prebuild-manifest.json"), JSON.stringify({ prebuilds: entries }));
    return out;
  };

  test("prebuilds compiled from the current native sources pass", () => {
    const r = check(withManifest("check-ok", [{ file: "linux-x64/a.node", sourceHash: prebuilds.nativeSourceHash(ROOT) }], ["linux-x64/a.node"]));
    expect([r.status, r.stdout.trim()]).toEqual([0, "[torch-lora prebuild] 1 prebuild(s) match the native sources"]);
  });

  test("a prebuild from other sources, or a listed file that is missing, fails the pack and is named", () => {
    const r = check(
      withManifest(
        "check-stale",
        [
          { file: "linux-x64/old.node", sourceHash: "0123456789abcdef" },
          { file: "linux-x64/gone.node", sourceHash: prebuilds.nativeSourceHash(ROOT) },
        ],
        ["linux-x64/old.node"],
      ),
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("linux-x64/old.node was compiled from other native sources (0123456789abcdef, now");
    expect(r.stderr).toContain("linux-x64/gone.node is listed but missing");
    expect(r.stderr).toContain("run npm run prebuild (or delete prebuilds/) before packing");
  });
});
