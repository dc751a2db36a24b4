/**
 * scripts/lib/hf-reference.js, the set-up of the interop tests' transformers and PEFT: where the
 * environment goes, when it counts as installed, and what a failed install reports (and leaves).
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { tempDir } from "../helpers/temp";

const ROOT = path.join(__dirname, "..", "..");
const { HF_VERSIONS, ensureHfReference, hfPython, hfReferenceDir, hfReferenceReady } = require(path.join(ROOT, "scripts/lib/hf-reference.js"));

const { dir, cleanup } = tempDir("tl-hf-reference-");
afterAll(cleanup);

test("the environment's folder: TORCH_LORA_HF_VENV, else under XDG_CACHE_HOME, else ~/.cache, named by the versions", () => {
  expect(hfReferenceDir({ TORCH_LORA_HF_VENV: "/opt/hf" })).toBe("/opt/hf");
  expect(hfPython({ TORCH_LORA_HF_VENV: "/opt/hf" })).toBe("/opt/hf/bin/python");
  const tag = `hf-reference-transformers-${HF_VERSIONS.transformers}-peft-${HF_VERSIONS.peft}`;
  expect(hfReferenceDir({ XDG_CACHE_HOME: "/var/cache/me" })).toBe(`/var/cache/me/torch-lora/${tag}`);
  expect(hfReferenceDir({})).toBe(path.join(os.homedir(), ".cache", "torch-lora", tag));
});

test("ready only with its Python and the marker of the same versions; then nothing is installed", () => {
  const env = { TORCH_LORA_HF_VENV: path.join(dir, "ready") };
  fs.mkdirSync(path.join(env.TORCH_LORA_HF_VENV, "bin"), { recursive: true });
  expect(hfReferenceReady(env)).toBe(false);
  fs.writeFileSync(hfPython(env), "");
  fs.writeFileSync(path.join(env.TORCH_LORA_HF_VENV, "torch-lora-ready.json"), JSON.stringify({ ...HF_VERSIONS, peft: "0.0.1" }));
  expect(hfReferenceReady(env)).toBe(false);
  fs.writeFileSync(path.join(env.TORCH_LORA_HF_VENV, "torch-lora-ready.json"), JSON.stringify(HF_VERSIONS));
  expect(hfReferenceReady(env)).toBe(true);
  // /bin/false as the Python that creates environments would fail: it is never started.
  expect(ensureHfReference({ env, basePython: "/bin/false" })).toBeNull();
});

test("a failed install names the step that failed and leaves no marker, so the next set-up tries again", () => {
  const env = { TORCH_LORA_HF_VENV: path.join(dir, "failing") };
  const logged: string[] = [];
  const why = ensureHfReference({ env, basePython: "/bin/false", log: (m: string) => logged.push(m) });
  expect(why).toMatch(/^\/bin\/false -m venv failed/);
  expect(logged).toEqual([expect.stringContaining(`installing the Hugging Face reference (torch ${HF_VERSIONS.torch}`)]);
  expect(hfReferenceReady(env)).toBe(false);
  expect(fs.existsSync(path.join(env.TORCH_LORA_HF_VENV, "torch-lora-ready.json"))).toBe(false);
});
