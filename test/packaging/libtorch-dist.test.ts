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
import * as path from "path";

const ROOT = path.resolve(__dirname, "../..");
const findLibtorch = require(path.join(ROOT, "scripts/lib/find-libtorch.js"));
const prebuilds = require(path.join(ROOT, "scripts/lib/prebuilds.js"));
const buildNative = require(path.join(ROOT, "scripts/lib/build-native.js"));
import { describeUnless, itUnless, skipTitle } from "../helpers/skip";
import { makeTempDir } from "../helpers/temp";

const MULTIARCH = "/usr/lib/x86_64-linux-gnu";
const SYSTEM_CMAKE = path.join(MULTIARCH, "cmake");
const HAVE_DEBIAN_TORCH = fs.existsSync(path.join(SYSTEM_CMAKE, "Torch/TorchConfig.cmake"));
if (!HAVE_DEBIAN_TORCH) {
  process.stderr.write(`[packaging] SKIPPED test/packaging/libtorch-dist.test.ts: ${SYSTEM_CMAKE}/Torch is absent (Debian's libtorch-dev)\n`);
}

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

/** Runs a CMake configure of CMakeLists.txt (no compile) into <tmp>/<name> with `defines`; `err` has its line wrapping undone. */
function cmakeConfigure(tmp: string, name: string, defines: Record<string, string>) {
  const build = path.join(tmp, name);
  const args = ["-S", ROOT, "-B", build, "-G", "Unix Makefiles", ...Object.entries(defines).map(([k, v]) => `-D${k}=${v}`)];
  const r = spawnSync("cmake", args, { encoding: "utf8", env: { PATH: process.env.PATH ?? "", HOME: tmp } });
  return { build, status: r.status, out: r.stdout, err: r.stderr.replace(/\s+/g, " ") };
}

/** Configures CMakeLists.txt (no compile) with `defines`; returns its link command, compile flags and log. */
function configureIn(tmp: string, name: string, defines: Record<string, string>) {
  const r = cmakeConfigure(tmp, name, defines);
  if (r.status !== 0) throw new Error(`cmake configure failed:\n${r.out}\n${r.err}`);
  const dir = path.join(r.build, "CMakeFiles/torch_lora.dir");
  return { link: fs.readFileSync(path.join(dir, "link.txt"), "utf8"), flags: fs.readFileSync(path.join(dir, "flags.make"), "utf8"), log: r.out };
}

/** The words of a link command that name one of `names` (lib<name>.so, by path or -l), in order. */
function libraryWords(link: string, names: string[]): string[] {
  const re = new RegExp(`(^|/)lib(${names.join("|")})\\.so$|^-l(${names.join("|")})$`);
  return link
    .split(/\s+/)
    .map((w) => w.replace(/^-Wl,--no-as-needed,"?|"$/g, ""))
    .filter((w) => re.test(w));
}

const HAVE_CMAKE = spawnSync("cmake", ["--version"]).status === 0 && spawnSync("c++", ["--version"]).status === 0;
if (!HAVE_CMAKE) process.stderr.write("[packaging] SKIPPED the CMake configure checks of test/packaging/libtorch-dist.test.ts: cmake or c++ is not on PATH\n");
/** Why the tests that run CMake or the compiler cannot run here, or null. */
const noCmake = HAVE_CMAKE ? null : "no cmake or c++";
/** A test that runs CMake or the compiler: skipped, tagged, without them. */
const testCmake = (title: string, fn: () => void) => itUnless(noCmake, title, fn);

describeUnless(
  HAVE_DEBIAN_TORCH ? null : "no Debian libtorch-dev",
  "an unpacked libtorch distribution named by LIBTORCH (stand-in built from Debian's libtorch)",
  () => {
    let tmp: string;
    let dist: string;
    beforeAll(() => {
      tmp = makeTempDir("torch-lora-dist-");
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
      expect(script("scripts/gyp-torch.js", ["include-dirs"], env).out).toBe(
        `${path.join(dist, "include")} ${path.join(dist, "include/torch/csrc/api/include")}`,
      );
      expect(script("scripts/gyp-torch.js", ["libraries"], env).out).toBe(`-L${path.join(dist, "lib")} -ltorch -ltorch_cpu -lc10`);
      expect(script("scripts/gyp-torch.js", ["ldflags"], env).out).toBe(`-Wl,-rpath,${path.join(dist, "lib")}`);
      expect(script("scripts/gyp-torch.js", ["abi-define"], env).out).toBe("_GLIBCXX_USE_CXX11_ABI=1");
      expect(script("scripts/gyp-torch.js", ["built-with"], env).out).toBe(`${debianVersion()}-cpu`);
    });

    test("the cmake-js settings keep find_package(Torch) inside the distribution (cmake mode, the default for a CPU libtorch)", () => {
      const found = { torchDir: path.join(dist, "share/cmake/Torch"), source: "LIBTORCH" };
      expect(buildNative.torchFlagsMode(found, {}).mode).toBe("cmake");
      expect(buildNative.torchCmakeDefines(found, "cmake")).toEqual({
        Torch_DIR: path.join(dist, "share/cmake/Torch"),
        TORCH_LORA_TORCH_FLAGS: "cmake",
        Caffe2_DIR: path.join(dist, "share/cmake/Caffe2"),
        TORCH_LIBRARY: path.join(dist, "lib/libtorch.so"),
        c10_LIBRARY: path.join(dist, "lib/libc10.so"),
      });
      // Files mode runs no CMake search, so it pins nothing but the mode and the libtorch.
      expect(buildNative.torchCmakeDefines(found, "files")).toEqual({ Torch_DIR: path.join(dist, "share/cmake/Torch"), TORCH_LORA_TORCH_FLAGS: "files" });
    });

    test("a build made against the system libtorch is not up to date for the distribution (it is configured afresh)", () => {
      const root = path.join(tmp, "clone");
      fs.mkdirSync(path.join(root, "build/Release"), { recursive: true });
      fs.writeFileSync(path.join(root, "build/Release/torch_lora.node"), "");
      const system = { torchDir: path.join(SYSTEM_CMAKE, "Torch"), source: "system" };
      const distribution = { torchDir: path.join(dist, "share/cmake/Torch"), source: "LIBTORCH" };
      const stamp = {
        torchDir: system.torchDir,
        version: debianVersion(),
        cuda: false,
        torchFlags: "cmake",
        cmake: buildNative.torchCmakeDefines(system, "cmake"),
      };
      fs.writeFileSync(path.join(root, "build/libtorch.json"), JSON.stringify(stamp));
      expect(buildNative.isUpToDate(root, system, {})).toBe(true);
      expect(buildNative.isUpToDate(root, distribution, {})).toBe(false);
      // The mode is part of the stamp: asking for the other one configures afresh, naming the same one does not.
      expect(buildNative.isUpToDate(root, system, { TORCH_LORA_TORCH_FLAGS: "cmake" })).toBe(true);
      expect(buildNative.isUpToDate(root, system, { TORCH_LORA_TORCH_FLAGS: "files" })).toBe(false);
      // A stamp from before the mode was recorded: not up to date.
      const { torchFlags: _mode, ...withoutMode } = stamp;
      fs.writeFileSync(path.join(root, "build/libtorch.json"), JSON.stringify(withoutMode));
      expect(buildNative.isUpToDate(root, system, {})).toBe(false);
      // A stamp from before the CMake settings were recorded: configured without them, so not up to date.
      fs.writeFileSync(path.join(root, "build/libtorch.json"), JSON.stringify({ torchDir: distribution.torchDir, version: debianVersion(), cuda: false }));
      expect(buildNative.isUpToDate(root, distribution, {})).toBe(false);
    });

    const configure = (name: string, defines: Record<string, string>) => configureIn(tmp, name, defines);

    testCmake("a configure with those settings links the distribution's libraries, with an rpath to its lib/ alone", () => {
      const lib = path.join(dist, "lib");
      const { link, flags, log } = configure("build-pinned", buildNative.torchCmakeDefines({ torchDir: path.join(dist, "share/cmake/Torch") }, "cmake"));
      expect(log).toContain("torch-lora: libtorch build flags from cmake mode");
      expect(log).toContain(`Found Torch: ${path.join(lib, "libtorch.so")}`);
      expect(link).toContain(`-Wl,-rpath,${lib} `);
      const torchLibs = link
        .split(/\s+/)
        .map((w) => w.replace(/^-Wl,--no-as-needed,"?|"$/g, ""))
        .filter((w) => /\/lib(torch|torch_cpu|c10)\.so/.test(w));
      expect(new Set(torchLibs)).toEqual(new Set([path.join(lib, "libtorch.so"), path.join(lib, "libtorch_cpu.so"), path.join(lib, "libc10.so")]));
      expect(flags).toContain(path.join(dist, "include/torch/csrc/api/include"));
      expect(flags).toContain("-D_GLIBCXX_USE_CXX11_ABI=1");
    });

    testCmake("files mode: the distribution's three libraries by path, its include dirs, rpath, ABI define and description, no find_package(Torch)", () => {
      const lib = path.join(dist, "lib");
      const { link, flags, log } = configure("build-files", buildNative.torchCmakeDefines({ torchDir: path.join(dist, "share/cmake/Torch") }, "files"));
      expect(log).toContain("torch-lora: libtorch build flags from files mode");
      // find_package(Torch) would have found Caffe2 and said so.
      expect(log).not.toContain("Found Torch");
      expect(log).not.toContain("Caffe2:");
      expect(log).toContain(`torch-lora: libtorch ${debianVersion()}-cpu from ${path.join(dist, "share/cmake/Torch")}`);
      // Exactly these, once each, by full path (the stand-in's libraries are real, with sonames).
      expect(libraryWords(link, ["torch", "torch_cpu", "c10", "torch_cuda", "c10_cuda"])).toEqual([
        path.join(lib, "libtorch.so"),
        path.join(lib, "libtorch_cpu.so"),
        path.join(lib, "libc10.so"),
      ]);
      expect(link).not.toContain(MULTIARCH);
      expect(link).not.toContain("-L");
      const rpaths = link.split(/\s+/).filter((w) => w.startsWith("-Wl,-rpath"));
      expect(rpaths).toEqual([`-Wl,-rpath,${lib}`]);
      // Both include dirs, as system headers; the ABI define and TORCH_LORA_BUILT_WITH as gyp-torch.js gives them.
      expect(flags).toContain(`-isystem ${path.join(dist, "include")} -isystem ${path.join(dist, "include/torch/csrc/api/include")}`);
      expect(flags).toContain("-D_GLIBCXX_USE_CXX11_ABI=1");
      expect(flags).toContain(`-DTORCH_LORA_BUILT_WITH=\\"${debianVersion()}-cpu\\"`);
      // Defines that only the Caffe2 targets of find_package(Torch) bring.
      expect(flags).not.toContain("USE_DISTRIBUTED");
    });

    testCmake("without them, CMake's search order would take the system's Caffe2 and libraries (why they are passed)", () => {
      const { link } = configure("build-plain", { Torch_DIR: path.join(dist, "share/cmake/Torch") });
      expect(link).toContain(path.join(MULTIARCH, "libc10.so"));
      expect(link).toMatch(new RegExp(`-Wl,-rpath,${MULTIARCH}:`));
    });

    test("LIBTORCH set to the folder the zip was unpacked in, or to nothing, is named with the fix", () => {
      expect(() => findLibtorch.findLibtorch({ LIBTORCH: tmp })).toThrow(
        `LIBTORCH=${tmp} holds no share/cmake/Torch/TorchConfig.cmake, but ${dist} does: set LIBTORCH=${dist}`,
      );
      const missing = path.join(tmp, "not-there");
      expect(() => findLibtorch.findLibtorch({ LIBTORCH: missing })).toThrow(`LIBTORCH=${missing} does not exist`);
      const lt = prebuilds.runtimeLibtorch({ LIBTORCH: tmp });
      const message = prebuilds.noAddonMessage(path.join(tmp, "pkg"), lt, { PATH: process.env.PATH ?? "" });
      expect(message).toContain(`set LIBTORCH=${dist}`);
      expect(message).toContain("correct LIBTORCH");
      // No libtorch was found, so a build "against the libtorch found" is not offered.
      expect(message).not.toContain("against the libtorch found");
    });
  },
);

/**
 * A CUDA libtorch as a pip wheel lays it out (torch/version.py, lib/libtorch_cuda.so), on a
 * machine with no CUDA toolkit. Its TorchConfig.cmake stops the configure if it is ever read:
 * that is what the real one does here (cuda.cmake needs nvcc). Its libraries are empty shared
 * objects with sonames, so CMake links them by path as it would the real ones.
 */
describe("a CUDA libtorch: files mode by default, TORCH_LORA_TORCH_FLAGS to choose", () => {
  let tmp: string;
  let wheel: string;
  let cudaFound: { torchDir: string; source: string };
  let cpuFound: { torchDir: string; source: string };
  const LIBS = ["torch", "torch_cpu", "c10", "torch_cuda", "c10_cuda"];

  /** Writes a torch/ folder of a wheel under <tmp>/<name>; `cuda` is its CUDA version or null. */
  function makeWheel(name: string, cuda: string | null, libs: string[]): string {
    const torch = path.join(tmp, name, "site-packages/torch");
    fs.mkdirSync(path.join(torch, "share/cmake/Torch"), { recursive: true });
    fs.mkdirSync(path.join(torch, "lib"));
    fs.mkdirSync(path.join(torch, "include/torch/csrc/api/include"), { recursive: true });
    fs.writeFileSync(
      path.join(torch, "share/cmake/Torch/TorchConfig.cmake"),
      'message(FATAL_ERROR "find_package(Torch) was called: the CUDA toolkit would be needed")\n' +
        'get_filename_component(TORCH_INSTALL_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../../" ABSOLUTE)\n' +
        'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")\n',
    );
    fs.writeFileSync(path.join(torch, "share/cmake/Torch/TorchConfigVersion.cmake"), 'set(PACKAGE_VERSION "2.4.0")\n');
    fs.writeFileSync(
      path.join(torch, "version.py"),
      `__version__ = '2.4.0+${cuda ? `cu${cuda.replace(".", "")}` : "cpu"}'\ndebug = False\ncuda: Optional[str] = ${cuda ? `'${cuda}'` : "None"}\n`,
    );
    for (const lib of libs) {
      const file = path.join(torch, "lib", `lib${lib}.so`);
      const r = spawnSync("c++", ["-shared", "-fPIC", "-x", "c++", "/dev/null", "-o", file, `-Wl,-soname,lib${lib}.so`], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`could not make ${file}: ${r.stderr}`);
    }
    return torch;
  }

  beforeAll(() => {
    tmp = makeTempDir("torch-lora-cuda-flags-");
    if (!HAVE_CMAKE) return;
    wheel = makeWheel("cu121", "12.1", LIBS);
    cudaFound = { torchDir: path.join(wheel, "share/cmake/Torch"), source: "python3 (torch.utils.cmake_prefix_path)" };
    cpuFound = { torchDir: path.join(makeWheel("cpu", null, LIBS.slice(0, 3)), "share/cmake/Torch"), source: "python3 (torch.utils.cmake_prefix_path)" };
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  testCmake("build-native picks files mode for a CUDA libtorch and cmake mode for a CPU one, saying why", () => {
    const cuda = buildNative.torchFlagsMode(cudaFound, {});
    expect(cuda.mode).toBe("files");
    expect(cuda.reason).toContain("a CUDA libtorch");
    expect(cuda.reason).toContain("CUDA toolkit");
    const cpu = buildNative.torchFlagsMode(cpuFound, {});
    expect(cpu.mode).toBe("cmake");
    expect(cpu.reason).toContain("a CPU libtorch");
    // The CMake settings follow the mode: files mode pins no find_package search.
    expect(buildNative.torchCmakeDefines(cudaFound, cuda.mode)).toEqual({ Torch_DIR: cudaFound.torchDir, TORCH_LORA_TORCH_FLAGS: "files" });
    expect(buildNative.torchCmakeDefines(cudaFound, "cmake")).toMatchObject({
      TORCH_LORA_TORCH_FLAGS: "cmake",
      TORCH_LIBRARY: path.join(wheel, "lib/libtorch.so"),
      C10_CUDA_LIBRARY: path.join(wheel, "lib/libc10_cuda.so"),
    });
  });

  testCmake("TORCH_LORA_TORCH_FLAGS overrides the choice either way; empty counts as unset", () => {
    expect(buildNative.torchFlagsMode(cudaFound, { TORCH_LORA_TORCH_FLAGS: "cmake" })).toEqual({ mode: "cmake", reason: "TORCH_LORA_TORCH_FLAGS=cmake" });
    expect(buildNative.torchFlagsMode(cpuFound, { TORCH_LORA_TORCH_FLAGS: "files" })).toEqual({ mode: "files", reason: "TORCH_LORA_TORCH_FLAGS=files" });
    expect(buildNative.torchFlagsMode(cudaFound, { TORCH_LORA_TORCH_FLAGS: "" }).mode).toBe("files");
    expect(buildNative.torchFlagsMode(cpuFound, { TORCH_LORA_TORCH_FLAGS: "" }).mode).toBe("cmake");
  });

  (noCmake === null ? test : test.skip).each(["FILES", "gyp", " files", "cmake,files"])(
    skipTitle("TORCH_LORA_TORCH_FLAGS=%j is refused, naming the variable and the allowed values, before anything is built", noCmake),
    (value) => {
      const env = { TORCH_LORA_TORCH_FLAGS: value };
      const expected = `TORCH_LORA_TORCH_FLAGS=${JSON.stringify(value)} is not a way to learn libtorch's build flags: use "cmake"`;
      expect(() => buildNative.torchFlagsMode(cudaFound, env)).toThrow(expected);
      expect(() => buildNative.torchFlagsMode(cudaFound, env)).toThrow('or "files"');
      const root = path.join(tmp, "refused");
      fs.mkdirSync(root, { recursive: true });
      expect(() => buildNative.buildNative(root, cudaFound, { env, log: () => undefined })).toThrow(expected);
      // Nothing was started: no build folder, no lock.
      expect(fs.readdirSync(root)).toEqual([]);
    },
  );

  testCmake("files mode configures the wheel without reading its TorchConfig.cmake: CUDA libraries kept with --no-as-needed", () => {
    const lib = path.join(wheel, "lib");
    const { link, flags, log } = configureIn(tmp, "build-cuda-files", buildNative.torchCmakeDefines(cudaFound, "files"));
    expect(log).toContain("torch-lora: libtorch build flags from files mode");
    expect(log).toContain(`torch-lora: libtorch 2.4.0-cuda12.1 from ${cudaFound.torchDir}`);
    const words = link.split(/\s+/);
    expect(libraryWords(link, LIBS)).toEqual(LIBS.map((l) => path.join(lib, `lib${l}.so`)));
    // libtorch_cuda is only reached through registration at load time: without --no-as-needed the linker would drop it.
    const push = words.indexOf("-Wl,--push-state,--no-as-needed");
    expect(push).toBeGreaterThan(words.indexOf(path.join(lib, "libc10.so")));
    expect(words.slice(push, push + 4)).toEqual([
      "-Wl,--push-state,--no-as-needed",
      path.join(lib, "libtorch_cuda.so"),
      path.join(lib, "libc10_cuda.so"),
      "-Wl,--pop-state",
    ]);
    expect(words.filter((w) => w.startsWith("-Wl,-rpath"))).toEqual([`-Wl,-rpath,${lib}`]);
    // The wheel's old ABI, from its TorchConfig.cmake's TORCH_CXX_FLAGS line (read as text, not run).
    expect(flags).toContain("-D_GLIBCXX_USE_CXX11_ABI=0");
    expect(flags).not.toContain("-D_GLIBCXX_USE_CXX11_ABI=1");
    expect(flags).toContain(`-isystem ${path.join(wheel, "include")} -isystem ${path.join(wheel, "include/torch/csrc/api/include")}`);
    expect(flags).toContain('-DTORCH_LORA_BUILT_WITH=\\"2.4.0-cuda12.1\\"');
  });

  testCmake("cmake mode reads that TorchConfig.cmake (what files mode avoids)", () => {
    const r = cmakeConfigure(tmp, "build-cuda-cmake", buildNative.torchCmakeDefines(cudaFound, "cmake"));
    expect(r.status).not.toBe(0);
    expect(r.err).toContain("find_package(Torch) was called");
  });

  testCmake("files mode stops, naming the library, when the libtorch lacks one (never the system's copy)", () => {
    const partial = makeWheel("cu121-partial", "12.1", ["torch", "torch_cpu", "c10", "torch_cuda"]);
    const r = cmakeConfigure(tmp, "build-cuda-partial", { Torch_DIR: path.join(partial, "share/cmake/Torch"), TORCH_LORA_TORCH_FLAGS: "files" });
    expect(r.status).not.toBe(0);
    expect(r.err).toContain(`libc10_cuda.so is not in the libtorch's library folder (${path.join(partial, "lib")})`);
  });

  testCmake("CMakeLists.txt refuses an unknown TORCH_LORA_TORCH_FLAGS, and files mode without Torch_DIR", () => {
    const bad = cmakeConfigure(tmp, "build-bad-mode", { Torch_DIR: cudaFound.torchDir, TORCH_LORA_TORCH_FLAGS: "nvcc" });
    expect(bad.status).not.toBe(0);
    expect(bad.err).toContain("TORCH_LORA_TORCH_FLAGS=nvcc is neither cmake nor files");
    const noDir = cmakeConfigure(tmp, "build-no-dir", { TORCH_LORA_TORCH_FLAGS: "files" });
    expect(noDir.status).not.toBe(0);
    expect(noDir.err).toContain("files mode needs Torch_DIR");
  });
});
