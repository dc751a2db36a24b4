"use strict";
// What scripts/setup.js will install before it builds, decided from facts about the machine and
// the command it serves, without installing anything: `node scripts/setup.js --for test --plan`
// prints it. Facts are gathered apart from the decision so that the decision can be checked on
// any machine (a fresh one, one without root, one without apt).
const fs = require("fs");
const { spawnSync } = require("child_process");
const { SYSTEM_PACKAGES } = require("./system-packages");
const { findLibtorch } = require("./find-libtorch");

/** The commands set-up serves, and the package purposes each needs (see system-packages.js). */
const COMMANDS = {
  demo: ["libtorch", "build"],
  test: ["libtorch", "build", "compare", "lint", "interop"],
  bench: ["libtorch", "build", "compare"],
};

/** What each command loses without PyTorch for the reference Python. */
const COMPARISONS = {
  test: "the PyTorch cross-checks of `npm test` and its rehearsal of scripts/gpu-check.sh",
  bench: "the PyTorch baseline of `npm run bench`",
};

/** The Python the tests and the benchmark compare against (test/helpers/python.ts, bench/python.ts). */
function referencePython(env = process.env) {
  return env.TORCH_LORA_PYTHON || "/usr/bin/python3";
}

/** Validates the value of `--for`; the command set-up serves. */
function commandFrom(value) {
  if (!Object.hasOwn(COMMANDS, value)) {
    throw new Error(`--for: expected one of ${Object.keys(COMMANDS).join(", ")} (the npm script set-up runs for), got ${JSON.stringify(value)}`);
  }
  return value;
}

/** The names among `names` that dpkg lists as installed. */
function dpkgInstalled(names) {
  const r = spawnSync("dpkg-query", ["-W", "-f=${Package} ${db:Status-Abbrev}\\n", ...names], { encoding: "utf8" });
  // dpkg-query exits 1 when some package is unknown, and still lists the others.
  return (r.stdout || "")
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([name, status]) => name && status === "ii")
    .map(([name]) => name.replace(/:.*$/, ""));
}

/** Whether `python` can `import torch`: false when it fails or cannot start. */
function pythonHasTorch(python) {
  return spawnSync(python, ["-c", "import torch"], { stdio: "ignore", timeout: 60000 }).status === 0;
}

/**
 * The facts the plan depends on. The reference Python is only started when `command` compares
 * against PyTorch; finding libtorch may start python3 (find-libtorch.js).
 */
function gatherFacts(command, env = process.env) {
  const debian = fs.existsSync("/etc/debian_version");
  const python = referencePython(env);
  return {
    debian,
    root: typeof process.getuid === "function" && process.getuid() === 0,
    libtorch: findLibtorch(env),
    installed: debian ? dpkgInstalled(SYSTEM_PACKAGES.map((p) => p.name)) : [],
    python,
    pythonHasTorch: COMMANDS[command].includes("compare") ? pythonHasTorch(python) : null,
  };
}

/** Whether the libtorch found is the one of Debian's libtorch-dev (in /usr, found by the system rule). */
function isDebianLibtorch(found) {
  return found.source === "system" && /^\/usr\/(lib|share)\//.test(found.torchDir);
}

const NO_LIBTORCH = [
  "no libtorch found. Provide one of:",
  "  - LIBTORCH=/path/to/libtorch (an unpacked libtorch distribution from pytorch.org, CPU or CUDA)",
  "  - Torch_DIR or CMAKE_PREFIX_PATH pointing at a folder with TorchConfig.cmake",
  "  - a python3 with torch installed (pip install torch)",
  "  - on Debian/Ubuntu: sudo apt-get install libtorch-dev libopenblas0-pthread",
].join("\n");

/**
 * Decides, from `facts` (see gatherFacts), what set-up does for `command` before building:
 * {apt: packages to install with apt-get, notices: what to say up front, error: why it cannot
 * go on, or null}. Installs only where it can (Debian/Ubuntu as root); elsewhere it names the
 * one command that would install what is missing.
 */
function planSetup(command, facts) {
  const purposes = COMMANDS[commandFrom(command)];
  const canApt = facts.debian && facts.root;
  const installed = new Set(facts.installed);
  const ofPurpose = (purpose) => SYSTEM_PACKAGES.filter((p) => p.purpose === purpose).map((p) => p.name);
  const missing = (purpose) => ofPurpose(purpose).filter((name) => !installed.has(name));
  const apt = [];
  const notices = [];
  let error = null;

  // libtorch: Debian's, unless another one was found (LIBTORCH, Torch_DIR, python3's torch, /opt/libtorch).
  if (!facts.libtorch || (facts.debian && isDebianLibtorch(facts.libtorch))) {
    const lacking = facts.debian ? missing("libtorch") : ofPurpose("libtorch");
    if (canApt) apt.push(...lacking);
    else if (!facts.libtorch) error = NO_LIBTORCH;
    else if (lacking.length)
      notices.push(
        `${lacking.join(", ")} not installed: Debian's libtorch then runs matmuls on reference BLAS, 35x slower (sudo apt-get install ${lacking.join(" ")})`,
      );
  }

  if (facts.debian) {
    const lacking = missing("build");
    if (canApt) apt.push(...lacking);
    else if (lacking.length) notices.push(`${lacking.join(", ")} not installed: the native build may fail (sudo apt-get install ${lacking.join(" ")})`);
  }

  if (facts.debian && purposes.includes("lint")) {
    const lacking = missing("lint");
    if (canApt) apt.push(...lacking);
    else if (lacking.length)
      notices.push(`${lacking.join(", ")} not installed: npm run lint cannot check native/'s format (sudo apt-get install ${lacking.join(" ")})`);
  }

  // The comparisons: what matters is that the reference Python imports torch.
  if (purposes.includes("compare") && facts.pythonHasTorch === false) {
    const lacking = facts.debian ? missing("compare") : ofPurpose("compare");
    if (canApt && lacking.length) apt.push(...lacking);
    else {
      // Debian's python3-torch serves /usr/bin/python3 only; any other Python gets torch from pip.
      const viaApt = facts.debian && facts.python === "/usr/bin/python3" && lacking.length > 0;
      const enable = viaApt ? `sudo apt-get install ${lacking.join(" ")}` : `${facts.python} -m pip install torch`;
      notices.push(`${facts.python} cannot import torch, so ${COMPARISONS[command]} will be skipped. Enable them with: ${enable}`);
    }
  }

  if (facts.debian && purposes.includes("interop")) {
    const lacking = missing("interop");
    if (canApt) apt.push(...lacking);
    else if (lacking.length)
      notices.push(
        `${lacking.join(", ")} not installed: the interop tests with transformers and PEFT will be skipped (sudo apt-get install ${lacking.join(" ")})`,
      );
  }
  return { command, apt, notices, error };
}

module.exports = { COMMANDS, COMPARISONS, commandFrom, gatherFacts, planSetup, pythonHasTorch, referencePython };
