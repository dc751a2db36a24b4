/**
 * An unpacked libtorch distribution (the layout of libtorch-*.zip) named by LIBTORCH, rebuilt
 * from Debian's libtorch 1.13 files: lib/, include/, share/cmake/{Torch,Caffe2} with the install
 * prefix computed as the zip's configs compute it, and build-version. Checks discovery, the
 * node-gyp flags and a CMake configure of CMakeLists.txt with the settings the cmake-js build
 * passes — on a machine that also has the same libraries in the system folders, which is where
 * CMake's search order would otherwise pick the system's copies.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const ROOT = path.resolve(__dirname, "../..");
/* eslint-disable @typescript-eslint/no-var-requires */
const findLibtorch = require(path.join(ROOT, "scripts/lib/find-libtorch.js"));
const prebuilds = require(path.join(ROOT, "scripts/lib/prebuilds.js"));
const buildNative = require(path.join(ROOT, "scripts/lib/build-native.js"));
/* eslint-enable @typescript-eslint/no-var-requires */

const MULTIARCH = "/usr/lib/x86_64-linux-gnu";
const SYSTEM_CMAKE = path.join(MULTIARCH, "cmake");
const HAVE_DEBIAN_TORCH = fs.existsSync(path.join(SYSTEM_CMAKE, "Torch/TorchConfig.cmake"));
if (!HAVE_DEBIAN_TORCH) {
  process.stderr.write(`[packaging] SKIPPED test/packaging/libtorch-dist.test.ts: ${SYSTEM_CMAKE}/Torch is absent (Debian's libtorch-dev)\n`);
}
const describeDist = HAVE_DEBIAN_TORCH ? describe : describe.skip;

/** Replaces `from` by `to` in a file, failing when `from` is absent (the source layout changed). */
function edit(file: string, from: string, to: string) {
  const text = fs.readFileSync(file, "utf8");
  if (!text.includes(from)) throw new Error(`${file} no longer contains ${JSON.stringify(from)}`);
  fs.writeFileSync(file, text.split(from).join(to));
}

/** Builds <dir>/libtorch the way libtorch-*.zip unpacks, from Debian's files; returns it. */
function makeDistribution(dir: string): string {
  const dist = path.join(dir, "libtorch");
  fs.mkdirSync(path.join(dist, "lib"), { recursive: true });
  fs.mkdirSync(path.join(dist, "include"));
  fs.mkdirSync(path.join(dist, "share/cmake"), { recursive: true });
  // The zip's libraries are plain files; links to Debian's serve for discovery and configure.
  for (const lib of ["libtorch", "libtorch_cpu", "libc10"]) {
    const real = fs.readdirSync(MULTIARCH).find((n) => new RegExp(`^${lib}\\.so\\.\\d+\\.\\d+\\.\\d+$`).test(n));
    if (!real) throw new Error(`no ${lib}.so.X.Y.Z in ${MULTIARCH}`);
    fs.symlinkSync(path.join(MULTIARCH, real), path.join(dist, "lib", `${lib}.so`));
  }
  for (const h of ["ATen", "c10", "caffe2", "torch"]) fs.symlinkSync(path.join("/usr/include", h), path.join(dist, "include", h));
  for (const pkg of ["Torch", "Caffe2"]) fs.cpSync(path.join(SYSTEM_CMAKE, pkg), path.join(dist, "share/cmake", pkg), { recursive: true });
  // Debian's configs sit four levels below /usr (lib/x86_64-linux-gnu/cmake/X); the zip's three (share/cmake/X).
  edit(path.join(dist, "share/cmake/Torch/TorchConfig.cmake"), '"${CMAKE_CURRENT_LIST_DIR}/../../../../"', '"${CMAKE_CURRENT_LIST_DIR}/../../../"');
  edit(path.join(dist, "share/cmake/Caffe2/Caffe2Config.cmake"), '"${CMAKE_CURRENT_LIST_DIR}/../../../../"', '"${CMAKE_CURRENT_LIST_DIR}/../../../"');
  // Caffe2Targets.cmake's four PATH steps reach /usr/lib on Debian and the prefix in the zip.
  edit(path.join(dist, "share/cmake/Caffe2/Caffe2Targets.cmake"), '"${_IMPORT_PREFIX}/../include"', '"${_IMPORT_PREFIX}/include"');
  const targets = fs.readdirSync(path.join(dist, "share/cmake/Caffe2")).filter((n) => /^Caffe2Targets-.+\.cmake$/.test(n));
  if (targets.length === 0) throw new Error("no Caffe2Targets-<config>.cmake in Debian's Caffe2 folder");
  for (const name of targets) {
    const file = path.join(dist, "share/cmake/Caffe2", name);
    const text = fs.readFileSync(file, "utf8");
    const moved = text.replace(/\$\{_IMPORT_PREFIX\}\/x86_64-linux-gnu\/(lib\w+\.so)\.[\d.]+/g, "${_IMPORT_PREFIX}/lib/$1");
    if (moved === text) throw new Error(`${file}: no library locations to move`);
    fs.writeFileSync(file, moved);
  }
  fs.writeFileSync(path.join(dist, "build-version"), `${debianVersion()}+cpu\n`);
  return dist;
}

/** PACKAGE_VERSION of Debian's TorchConfigVersion.cmake, read here rather than by the code under test. */
function debianVersion(): string {
  const text = fs.readFileSync(path.join(SYSTEM_CMAKE, "Torch/TorchConfigVersion.cmake"), "utf8");
  return /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(text)![1];
}

/** Runs a script of this repository with only PATH and `env` set (no discovery hints inherited). */
function script(rel: string, args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, [path.join(ROOT, rel), ...args], { env: { PATH: process.env.PATH ?? "", ...env }, encoding: "utf8" });
  return { status: r.status, out: r.stdout.trim(), err: r.stderr };
}

describeDist("an unpacked libtorch distribution named by LIBTORCH (stand-in built from Debian's libtorch)", () => {
  let tmp: string;
  let dist: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "torch-lora-dist-"));
    dist = makeDistribution(tmp);
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test("discovery takes LIBTORCH and describes the distribution's own folders", () => {
    const found = findLibtorch.findLibtorch({ LIBTORCH: dist, PATH: "" });
    expect(found).toEqual({ torchDir: path.join(dist, "share/cmake/Torch"), source: "LIBTORCH" });
    const d = findLibtorch.describeLibtorch(found.torchDir);
    expect(d).toMatchObject({ version: debianVersion(), cuda: false, variant: "cpu", cxx11Abi: true, prefix: dist, libDir: path.join(dist, "lib") });
    expect(d.includeDirs).toEqual([path.join(dist, "include"), path.join(dist, "include/torch/csrc/api/include")]);
    // The headers the builds will include are really there.
    expect(fs.existsSync(path.join(d.includeDirs[1], "torch/torch.h"))).toBe(true);
    expect(findLibtorch.libtorchTag(d)).toBe(`torch${debianVersion().replace(/\./g, "_")}-cpu-cxx11abi1`);
  });

  test("gyp-torch.js gives node-gyp the distribution's headers, libraries and rpath", () => {
    const env = { LIBTORCH: dist };
    expect(script("scripts/gyp-torch.js", ["include-dirs"], env).out).toBe(`${path.join(dist, "include")} ${path.join(dist, "include/torch/csrc/api/include")}`);
    expect(script("scripts/gyp-torch.js", ["libraries"], env).out).toBe(`-L${path.join(dist, "lib")} -ltorch -ltorch_cpu -lc10`);
    expect(script("scripts/gyp-torch.js", ["ldflags"], env).out).toBe(`-Wl,-rpath,${path.join(dist, "lib")}`);
    expect(script("scripts/gyp-torch.js", ["abi-define"], env).out).toBe("_GLIBCXX_USE_CXX11_ABI=1");
    expect(script("scripts/gyp-torch.js", ["built-with"], env).out).toBe(`${debianVersion()}-cpu`);
  });

  test("the cmake-js settings keep find_package(Torch) inside the distribution", () => {
    const defines = buildNative.torchCmakeDefines({ torchDir: path.join(dist, "share/cmake/Torch") });
    expect(defines).toEqual({
      Torch_DIR: path.join(dist, "share/cmake/Torch"),
      Caffe2_DIR: path.join(dist, "share/cmake/Caffe2"),
      TORCH_LIBRARY: path.join(dist, "lib/libtorch.so"),
      c10_LIBRARY: path.join(dist, "lib/libc10.so"),
    });
  });

  test("a build made against the system libtorch is not up to date for the distribution (it is configured afresh)", () => {
    const root = path.join(tmp, "clone");
    fs.mkdirSync(path.join(root, "build/Release"), { recursive: true });
    fs.writeFileSync(path.join(root, "build/Release/torch_lora.node"), "");
    const system = { torchDir: path.join(SYSTEM_CMAKE, "Torch"), source: "system" };
    const distribution = { torchDir: path.join(dist, "share/cmake/Torch"), source: "LIBTORCH" };
    fs.writeFileSync(path.join(root, "build/libtorch.json"), JSON.stringify({ torchDir: system.torchDir, version: debianVersion(), cuda: false, cmake: buildNative.torchCmakeDefines(system) }));
    expect(buildNative.isUpToDate(root, system)).toBe(true);
    expect(buildNative.isUpToDate(root, distribution)).toBe(false);
    // A stamp from before the CMake settings were recorded: configured without them, so not up to date.
    fs.writeFileSync(path.join(root, "build/libtorch.json"), JSON.stringify({ torchDir: distribution.torchDir, version: debianVersion(), cuda: false }));
    expect(buildNative.isUpToDate(root, distribution)).toBe(false);
  });

  /** Configures CMakeLists.txt (no compile) with `defines`; returns its link command and include flags. */
  function configure(name: string, defines: Record<string, string>) {
    const build = path.join(tmp, name);
    const args = ["-S", ROOT, "-B", build, "-G", "Unix Makefiles", ...Object.entries(defines).map(([k, v]) => `-D${k}=${v}`)];
    const r = spawnSync("cmake", args, { encoding: "utf8", env: { PATH: process.env.PATH ?? "", HOME: tmp } });
    if (r.status !== 0) throw new Error(`cmake configure failed:\n${r.stdout}\n${r.stderr}`);
    const dir = path.join(build, "CMakeFiles/torch_lora.dir");
    return { link: fs.readFileSync(path.join(dir, "link.txt"), "utf8"), flags: fs.readFileSync(path.join(dir, "flags.make"), "utf8"), log: r.stdout };
  }

  test("a configure with those settings links the distribution's libraries, with an rpath to its lib/ alone", () => {
    if (spawnSync("cmake", ["--version"]).status !== 0) return console.warn("[packaging] SKIPPED: cmake is not on PATH");
    const lib = path.join(dist, "lib");
    const { link, flags, log } = configure("build-pinned", buildNative.torchCmakeDefines({ torchDir: path.join(dist, "share/cmake/Torch") }));
    expect(log).toContain(`Found Torch: ${path.join(lib, "libtorch.so")}`);
    expect(link).toContain(`-Wl,-rpath,${lib} `);
    const torchLibs = link.split(/\s+/).map((w) => w.replace(/^-Wl,--no-as-needed,"?|"$/g, "")).filter((w) => /\/lib(torch|torch_cpu|c10)\.so/.test(w));
    expect(new Set(torchLibs)).toEqual(new Set([path.join(lib, "libtorch.so"), path.join(lib, "libtorch_cpu.so"), path.join(lib, "libc10.so")]));
    expect(flags).toContain(path.join(dist, "include/torch/csrc/api/include"));
    expect(flags).toContain("-D_GLIBCXX_USE_CXX11_ABI=1");
  });

  test("without them, CMake's search order would take the system's Caffe2 and libraries (why they are passed)", () => {
    if (spawnSync("cmake", ["--version"]).status !== 0) return console.warn("[packaging] SKIPPED: cmake is not on PATH");
    const { link } = configure("build-plain", { Torch_DIR: path.join(dist, "share/cmake/Torch") });
    expect(link).toContain(path.join(MULTIARCH, "libc10.so"));
    expect(link).toMatch(new RegExp(`-Wl,-rpath,${MULTIARCH}:`));
  });

  test("LIBTORCH set to the folder the zip was unpacked in, or to nothing, is named with the fix", () => {
    expect(() => findLibtorch.findLibtorch({ LIBTORCH: tmp })).toThrow(`LIBTORCH=${tmp} holds no share/cmake/Torch/TorchConfig.cmake, but ${dist} does: set LIBTORCH=${dist}`);
    const missing = path.join(tmp, "not-there");
    expect(() => findLibtorch.findLibtorch({ LIBTORCH: missing })).toThrow(`LIBTORCH=${missing} does not exist`);
    const lt = prebuilds.runtimeLibtorch({ LIBTORCH: tmp });
    const message = prebuilds.noAddonMessage(path.join(tmp, "pkg"), lt, { PATH: process.env.PATH ?? "" });
    expect(message).toContain(`set LIBTORCH=${dist}`);
    expect(message).toContain("correct LIBTORCH");
    // No libtorch was found, so a build "against the libtorch found" is not offered.
    expect(message).not.toContain("against the libtorch found");
  });
});
