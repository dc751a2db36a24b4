"use strict";
// Prebuilt addons: the manifest that says what each was linked against, the choice of the one
// that fits the libtorch found at run time, and the message when none fits. Shared by the
// loader (lib/binding.ts), the install script and the prebuild script, so all three agree.
const fs = require("fs");
const path = require("path");
const { findLibtorch, describeLibtorch, libtorchTag } = require("./find-libtorch");

const MANIFEST = "prebuilds/prebuild-manifest.json";

/**
 * A hash of the native sources (native/*, binding.gyp, CMakeLists.txt), recorded with each
 * prebuild so a prebuild left over from older sources can be told apart from a current one.
 */
function nativeSourceHash(root) {
  const hash = require("crypto").createHash("sha256");
  const files = fs
    .readdirSync(path.join(root, "native"))
    .filter((n) => /\.(cc|h)$/.test(n))
    .sort()
    .map((n) => `native/${n}`);
  for (const rel of [...files, "binding.gyp", "CMakeLists.txt"]) {
    const file = path.join(root, rel);
    if (!fs.existsSync(file)) continue;
    hash.update(rel).update("\0").update(fs.readFileSync(file)).update("\0");
  }
  return hash.digest("hex").slice(0, 16);
}

/** glibc or musl: the C library this Node process runs on. */
function currentLibc() {
  const report = typeof process.report?.getReport === "function" ? process.report.getReport() : null;
  return report && report.header && report.header.glibcVersionRuntime ? "glibc" : "musl";
}

/** The manifest's entries ([] when there is none); `file` is relative to prebuilds/. */
function readManifest(root) {
  const file = path.join(root, MANIFEST);
  if (!fs.existsSync(file)) return [];
  const parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  return Array.isArray(parsed.prebuilds) ? parsed.prebuilds : [];
}

/** Adds or replaces (same file) an entry in the manifest under `root`. */
function writeManifestEntry(root, entry) {
  const entries = readManifest(root).filter((e) => e.file !== entry.file);
  entries.push(entry);
  entries.sort((a, b) => a.file.localeCompare(b.file));
  fs.mkdirSync(path.join(root, "prebuilds"), { recursive: true });
  fs.writeFileSync(path.join(root, MANIFEST), JSON.stringify({ prebuilds: entries }, null, 2) + "\n");
}

/**
 * The libtorch this process would build against, described, or {error} / null.
 * Discovery errors (a LIBTORCH that points nowhere) are reported, not thrown: the caller explains.
 */
function runtimeLibtorch(env = process.env) {
  try {
    const found = findLibtorch(env);
    if (!found) return null;
    const d = describeLibtorch(found.torchDir);
    return { ...d, torchDir: found.torchDir, source: found.source, tag: libtorchTag(d) };
  } catch (err) {
    return { error: err.message };
  }
}

/**
 * The tag of an addon from its own buildInfo() (what it was compiled and linked against), in
 * the form libtorchTag() gives a libtorch: builtWith is "<version>-cpu" or "<version>-cuda<X.Y>".
 */
function tagOfBuildInfo(info) {
  const m = /-(cpu|cuda([\d.]*))$/.exec(info.builtWith || "");
  if (!m) throw new Error(`unexpected buildInfo().builtWith ${JSON.stringify(info.builtWith)}`);
  const variant = m[1] === "cpu" ? "cpu" : m[2] ? `cu${m[2].replace(".", "")}` : "cuda";
  return libtorchTag({ version: info.torchVersion, variant, cxx11Abi: info.cxx11Abi });
}

/**
 * The Node-API fields of a manifest entry, read from the addon's own buildInfo(): a stable
 * build gets {napi: 8}; an experimental one (NAPI_EXPERIMENTAL: it imports symbols such as
 * node_api_post_finalizer that older Nodes lack, and their behaviour may change between Node
 * majors) gets {napi: "experimental", nodeMajor, nodeVersion} for the Node whose headers it was
 * compiled against (buildInfo().nodeVersion; `fallbackNodeVersion` when it does not say).
 */
function napiOfBuildInfo(info, fallbackNodeVersion = process.versions.node) {
  if (typeof info.napiExperimental !== "boolean") {
    throw new Error("the addon's buildInfo() does not say which Node-API it uses (napiExperimental): it predates these sources, rebuild it");
  }
  if (!info.napiExperimental) {
    const napi = Number(info.napiVersion ?? 8);
    if (!Number.isInteger(napi) || napi < 1 || napi > 100) throw new Error(`unexpected buildInfo().napiVersion ${JSON.stringify(info.napiVersion)}`);
    return { napi };
  }
  const nodeVersion = String(info.nodeVersion || fallbackNodeVersion);
  return { napi: "experimental", nodeMajor: Number(nodeVersion.split(".")[0]), nodeVersion };
}

/**
 * True for an installed package, false for a clone of the repository: only a clone has the
 * TypeScript sources (lib/ is not shipped). The loader builds on first load and the install
 * step builds only in an installed package; a clone is built by scripts/setup.js.
 */
function isInstalledPackage(root) {
  return !fs.existsSync(path.join(root, "lib/binding.ts"));
}

/** True for an entry built with experimental Node-API (usable on one Node major only). */
function isExperimental(entry) {
  return entry.napi === "experimental";
}

/**
 * The manifest path of a prebuild, relative to prebuilds/: prebuildify's scheme
 * <platform>-<arch>/torch-lora.<tag>.napi.<libc>.node, with a node<major> marker after "napi"
 * for an experimental build, so both variants of one libtorch can ship side by side.
 */
function prebuildFile(tag, libc, napiFields, platform = process.platform, arch = process.arch) {
  const napi = isExperimental(napiFields) ? `napi.node${napiFields.nodeMajor}` : "napi";
  return `${platform}-${arch}/torch-lora.${tag}.${napi}.${libc}.node`;
}

/** How the no-addon message names an entry's Node-API: "N-API 8" or "experimental N-API, Node 20 only". */
function napiLabel(entry) {
  if (!isExperimental(entry)) return `N-API ${entry.napi}`;
  const from = entry.nodeVersion ? `, from ${entry.nodeVersion}` : "";
  return `experimental N-API, Node ${entry.nodeMajor} only${from}`;
}

/** -1, 0 or 1 as version string a is older than, equal to or newer than b (numeric x.y.z). */
function compareVersions(a, b) {
  const pa = String(a).split(".").map(Number);
  const pb = String(b).split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/** The host a prebuild must fit: this process's platform, arch, libc, Node-API and Node version. */
function currentHost() {
  return { platform: process.platform, arch: process.arch, libc: currentLibc(), napi: Number(process.versions.napi), node: process.versions.node };
}

/**
 * Can this host run the Node-API the entry was built for? A stable entry needs Node-API >=
 * entry.napi. An experimental one needs the same Node major it was built with, and no older a
 * release of it than the headers it was compiled against (experimental symbols arrive in minor
 * releases: node_api_post_finalizer is in 20.10 but not 20.9).
 */
function napiFits(entry, host) {
  if (!isExperimental(entry)) return Number(entry.napi) <= host.napi;
  if (!host.node || Number(String(host.node).split(".")[0]) !== Number(entry.nodeMajor)) return false;
  return !entry.nodeVersion || compareVersions(host.node, entry.nodeVersion) >= 0;
}

/** Does the prebuild `entry` fit this platform and the libtorch `lt`? */
function fits(entry, lt, host = currentHost()) {
  return (
    entry.platform === host.platform &&
    entry.arch === host.arch &&
    (entry.libc || "glibc") === host.libc &&
    napiFits(entry, host) &&
    Boolean(lt) &&
    !lt.error &&
    entry.tag === lt.tag
  );
}

/**
 * The absolute path of the prebuild that fits `lt`, or null. An experimental build for this
 * Node (GC-time tensor finalizers) is preferred over the stable one of the same libtorch.
 */
function selectPrebuild(root, lt, host) {
  return fittingPrebuilds(root, lt, host)[0] || null;
}

/**
 * Every prebuild that fits, best first (experimental for this Node major, then stable): when
 * the first does not load here, the next may.
 */
function fittingPrebuilds(root, lt, host) {
  const fitting = readManifest(root).filter((e) => fits(e, lt, host));
  return [...fitting.filter(isExperimental), ...fitting.filter((e) => !isExperimental(e))].map((e) => path.join(root, "prebuilds", e.file));
}

/** Is `name` an executable file in one of the PATH folders? */
function onPath(name, env = process.env) {
  return (env.PATH || "")
    .split(path.delimiter)
    .filter(Boolean)
    .some((dir) => {
      try {
        fs.accessSync(path.join(dir, name), fs.constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}

/** What a source build needs that is missing from PATH ([] when a build can run). */
function missingToolchain(env = process.env) {
  const missing = [];
  if (!["c++", "g++", "clang++"].some((c) => onPath(c, env))) missing.push("a C++17 compiler (g++ or clang++)");
  if (!onPath("cmake", env)) missing.push("cmake >= 3.18");
  return missing;
}

function describeFound(lt) {
  if (!lt) return "no libtorch found (looked at LIBTORCH, Torch_DIR, CMAKE_PREFIX_PATH, python3's torch, system folders)";
  if (lt.error) return `libtorch discovery failed: ${lt.error}`;
  const cuda = lt.cuda ? `CUDA ${lt.cudaVersion}` : "CPU";
  return `libtorch ${lt.version} (${cuda}, _GLIBCXX_USE_CXX11_ABI=${lt.cxx11Abi ? 1 : 0}) at ${lt.torchDir} [found via ${lt.source}] -> tag ${lt.tag}`;
}

/**
 * One message for "no addon can be loaded here": which libtorch was found, which prebuilds
 * exist, and the concrete ways out.
 */
function noAddonMessage(root, lt, env = process.env) {
  const entries = readManifest(root);
  const shipped = entries.length
    ? entries.map((e) => `    ${e.file}  (${e.platform}-${e.arch} ${e.libc || "glibc"}, ${napiLabel(e)}, ${e.tag})`).join("\n")
    : "    none";
  const missing = missingToolchain(env);
  const installScript = path.join(root, "scripts/install.js");
  const wanted = [...new Set(entries.filter((e) => e.platform === process.platform && e.arch === process.arch).map((e) => e.tag))];
  const lines = [
    "torch-lora: no native addon fits this machine.",
    `  found: ${describeFound(lt)}`,
    `  prebuilt addons in this package (${path.join(root, "prebuilds")}):`,
    shipped,
    "  fix, one of:",
  ];
  if (lt && lt.error) {
    // A source build would fail on the same discovery error: fix the setting first.
    lines.push('    - correct LIBTORCH (see "found" above) or unset it to use the libtorch found otherwise, then load again;');
    lines.push(`      with no fitting prebuild, build from source after that: node ${installScript} --build`);
  } else if (!lt) {
    lines.push(
      "    - install a libtorch: an unpacked distribution from pytorch.org with LIBTORCH=/path/to/libtorch, pip install torch, or on Debian/Ubuntu apt-get install libtorch-dev libopenblas0-pthread;",
    );
    lines.push(`      then, with no fitting prebuild, build from source: node ${installScript} --build`);
  } else if (missing.length === 0) {
    lines.push(`    - build from source against the libtorch found (a few minutes): node ${installScript} --build`);
  } else {
    lines.push(`    - install ${missing.join(" and ")}, then build from source: node ${installScript} --build`);
  }
  if (wanted.some((t) => /^torch1_13_\d+-cpu-cxx11abi1$/.test(t))) {
    lines.push("    - Debian/Ubuntu: apt-get install libtorch-dev libopenblas0-pthread (the libtorch the prebuilt addon was built against)");
  }
  if (wanted.length) lines.push(`    - point LIBTORCH at a libtorch that matches a prebuilt tag: ${wanted.join(", ")}`);
  lines.push("    - set TORCH_LORA_ADDON=/path/to/torch_lora.node to use an addon built elsewhere");
  return lines.join("\n");
}

module.exports = {
  fittingPrebuilds,
  isInstalledPackage,
  MANIFEST,
  currentLibc,
  nativeSourceHash,
  readManifest,
  writeManifestEntry,
  runtimeLibtorch,
  tagOfBuildInfo,
  napiOfBuildInfo,
  isExperimental,
  prebuildFile,
  napiLabel,
  currentHost,
  fits,
  selectPrebuild,
  missingToolchain,
  describeFound,
  noAddonMessage,
};
