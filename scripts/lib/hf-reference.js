"use strict";
// The Hugging Face reference of the interop tests (test/interop/): transformers and PEFT
// themselves, with the PyTorch they run on, in a virtual environment of their own. The tests
// check that checkpoints and adapters cross between torch-lora and those libraries both ways
// and give the same numbers. Debian's python3-torch (1.13) is too old for them, so they get a
// pip-installed PyTorch, kept apart from /usr/bin/python3 (the reference of every other test).
//
// The environment lives outside the clone (1 GB or more, installed once per version set):
// $TORCH_LORA_HF_VENV, else $XDG_CACHE_HOME/torch-lora/hf-reference-<versions>, else
// ~/.cache/torch-lora/hf-reference-<versions>. pip installs from the indexes its own
// configuration names.
const fs = require("fs");
const os = require("os");
const path = require("path");
const { spawnSync } = require("child_process");

/** The versions the interop tests were written against (PyTorch: any 2.13 build, CPU or CUDA). */
const HF_VERSIONS = { torch: "2.13.*", transformers: "5.17.0", peft: "0.21.0" };

const versionTag = `transformers-${HF_VERSIONS.transformers}-peft-${HF_VERSIONS.peft}`;

/** The folder of the environment. */
function hfReferenceDir(env = process.env) {
  if (env.TORCH_LORA_HF_VENV) return env.TORCH_LORA_HF_VENV;
  const cache = env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(cache, "torch-lora", `hf-reference-${versionTag}`);
}

/** The environment's Python. */
function hfPython(env = process.env) {
  return path.join(hfReferenceDir(env), "bin", "python");
}

/** The marker a complete install leaves: its versions, so that a changed set installs anew. */
function markerPath(env) {
  return path.join(hfReferenceDir(env), "torch-lora-ready.json");
}

/** Whether the environment was installed completely for {@link HF_VERSIONS} (no Python is started). */
function hfReferenceReady(env = process.env) {
  try {
    return fs.readFileSync(markerPath(env), "utf8") === JSON.stringify(HF_VERSIONS) && fs.existsSync(hfPython(env));
  } catch {
    return false;
  }
}

/**
 * Installs the environment unless it is ready. Returns null when it is, else why it could not
 * be installed (the interop tests then skip, tagged; CI refuses that skip). `basePython` is
 * the Python that creates the environment (it needs its venv module: Debian's python3-venv).
 */
function ensureHfReference({ log = () => {}, env = process.env, basePython = "/usr/bin/python3" } = {}) {
  if (hfReferenceReady(env)) return null;
  const dir = hfReferenceDir(env);
  const python = hfPython(env);
  const step = (what, command, args) => {
    const r = spawnSync(command, args, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8", env: { ...env, PIP_RETRIES: env.PIP_RETRIES ?? "1" } });
    if (r.status === 0) return null;
    const detail = (r.error ? r.error.message : r.stderr || "").trim().split("\n").slice(-3).join("\n");
    return `${what} failed: ${detail}`;
  };
  log(`installing the Hugging Face reference (torch ${HF_VERSIONS.torch}, transformers ${HF_VERSIONS.transformers}, peft ${HF_VERSIONS.peft}) in ${dir}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const failed =
    step(`${basePython} -m venv`, basePython, ["-m", "venv", dir]) ||
    step("pip install", python, [
      "-m",
      "pip",
      "install",
      "--quiet",
      `torch==${HF_VERSIONS.torch}`,
      `transformers==${HF_VERSIONS.transformers}`,
      `peft==${HF_VERSIONS.peft}`,
    ]) ||
    step("import torch, transformers, peft", python, ["-c", "import torch, transformers, peft"]);
  if (failed) return failed;
  fs.writeFileSync(markerPath(env), JSON.stringify(HF_VERSIONS));
  return null;
}

module.exports = { HF_VERSIONS, ensureHfReference, hfPython, hfReferenceDir, hfReferenceReady };
