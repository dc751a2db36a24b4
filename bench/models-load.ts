/**
 * Pretrained-model figures: load time and peak resident memory of `models.fromPretrained` on a
 * GPT-2-small-sized checkpoint (124M parameters, about 500 MB in fp32), single-file and sharded,
 * against the file size and a baseline process; then batch-1 greedy generation in ms/token with
 * the KV cache, next to the argmax loop without a cache in the same run.
 *
 * Each measurement runs in a fresh child process, so the peak RSS is that of the load alone.
 * `npm run bench` runs it as its own section (not with --quick); it also runs on its own:
 * Usage: node dist/bench/models-load.js [--layers N] (default 12)
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { cat, models, noGrad, tensor, tidy } from "../lib";

const MB = 1 << 20;

function maxRssMB(): number {
  return process.resourceUsage().maxRSS / 1024; // KB on Linux
}

function folderBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

async function child(mode: string, dir: string, layers: number): Promise<void> {
  if (mode === "write") {
    const config = { model_type: "gpt2", n_layer: layers };
    const model = new models.GPT2LMHeadModel(config);
    await model.savePretrained(path.join(dir, "single"));
    await model.savePretrained(path.join(dir, "sharded"), { maxShardSize: 100 * MB });
    console.log("{}");
    return;
  }
  if (mode === "baseline") {
    console.log(JSON.stringify({ maxRss: maxRssMB() }));
    return;
  }
  const t0 = process.hrtime.bigint();
  const model = await models.fromPretrained(dir);
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const out: Record<string, number> = { loadMs, maxRss: maxRssMB() };
  if (mode === "load+generate") {
    const prompt = tensor([Array.from({ length: 16 }, (_, i) => (i * 97) % 50257)], { dtype: "int64" });
    model.generate(prompt, { maxNewTokens: 4 }); // warm-up
    const n = 32;
    let t = process.hrtime.bigint();
    model.generate(prompt, { maxNewTokens: n });
    out.cachedMsPerToken = Number(process.hrtime.bigint() - t) / 1e6 / n;
    t = process.hrtime.bigint();
    let ids = prompt;
    noGrad(() => {
      for (let i = 0; i < n; i++) {
        ids = tidy(() => {
          const logits = model.forward(ids);
          return cat(
            [
              ids,
              logits
                .narrow(1, ids.shape[1] - 1, 1)
                .squeeze(1)
                .argmax(-1)
                .unsqueeze(1),
            ],
            1,
          );
        });
      }
    });
    out.uncachedMsPerToken = Number(process.hrtime.bigint() - t) / 1e6 / n;
  }
  console.log(JSON.stringify(out));
}

function run(mode: string, dir: string, layers: number): Record<string, number> {
  const r = spawnSync(process.execPath, [__filename, "--child", mode, dir, "--layers", String(layers)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${mode} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string) as Record<string, number>;
}

/** One load's figures: wall time and the child process's peak RSS, in MB. */
export interface LoadFigures {
  loadMs: number;
  maxRss: number;
}

/** Everything {@link measureModelsLoad} measures. */
export interface ModelsLoadResult {
  layers: number;
  checkpointMB: number;
  /** Number of files of the sharded copy. */
  shards: number;
  baselineRssMB: number;
  single: LoadFigures;
  sharded: LoadFigures;
  cachedMsPerToken: number;
  uncachedMsPerToken: number;
  /** PyTorch eager's greedy decoding with a KV cache on the same checkpoint, or null when /usr/bin/python3 failed (with the reason). */
  pythonMsPerToken: number | null;
  pythonError?: string;
}

/**
 * Writes a GPT-2 checkpoint of `layers` layers (n_embd 768, GPT-2's vocab: about 500 MB at 12)
 * once as one file and once in 100 MB shards, then loads each in a fresh child process.
 */
export function measureModelsLoad(layers = 12): ModelsLoadResult {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tl-models-bench-"));
  try {
    run("write", dir, layers);
    const base = run("baseline", dir, layers);
    const single = run("load+generate", path.join(dir, "single"), layers);
    const sharded = run("load", path.join(dir, "sharded"), layers);
    const python = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";
    const py = spawnSync(python, [path.join(__dirname, "..", "..", "bench", "python", "gpt2_generate.py"), path.join(dir, "single"), "16", "32"], {
      encoding: "utf8",
    });
    const pythonMsPerToken = py.status === 0 ? (JSON.parse(py.stdout.trim().split("\n").pop() as string) as { msPerToken: number }).msPerToken : null;
    return {
      layers,
      checkpointMB: folderBytes(path.join(dir, "single")) / MB,
      shards: fs.readdirSync(path.join(dir, "sharded")).filter((f) => f.endsWith(".safetensors")).length,
      baselineRssMB: base.maxRss,
      single: { loadMs: single.loadMs, maxRss: single.maxRss },
      sharded: { loadMs: sharded.loadMs, maxRss: sharded.maxRss },
      cachedMsPerToken: single.cachedMsPerToken,
      uncachedMsPerToken: single.uncachedMsPerToken,
      pythonMsPerToken,
      ...(py.status === 0 ? {} : { pythonError: `${python} failed: ${py.stderr.trim().split("\n").pop()}` }),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The figures as report lines. */
export function formatModelsLoad(r: ModelsLoadResult): string[] {
  const size = r.checkpointMB;
  const lines = [`GPT-2 (${r.layers} layers, n_embd 768, fp32): checkpoint ${size.toFixed(0)} MB; baseline process peak RSS ${r.baselineRssMB.toFixed(0)} MB`];
  for (const [name, f] of [
    ["model.safetensors", r.single],
    [`${r.shards} shards of <= 100 MB`, r.sharded],
  ] as const) {
    const extra = f.maxRss - r.baselineRssMB;
    lines.push(
      `  ${name}: load ${f.loadMs.toFixed(0)} ms, peak RSS ${f.maxRss.toFixed(0)} MB (+${extra.toFixed(0)} MB over baseline = ${(extra / size).toFixed(2)}x the file size)`,
    );
  }
  lines.push(
    `  greedy batch 1, 16-token prompt, 32 new tokens: ${r.cachedMsPerToken.toFixed(1)} ms/token with the KV cache, ${r.uncachedMsPerToken.toFixed(1)} ms/token recomputing without it`,
  );
  lines.push(
    r.pythonMsPerToken !== null
      ? `  PyTorch eager with a KV cache, same checkpoint: ${r.pythonMsPerToken.toFixed(1)} ms/token (torch-lora / PyTorch = ${(r.cachedMsPerToken / r.pythonMsPerToken).toFixed(2)})`
      : `  (no PyTorch comparison: ${r.pythonError})`,
  );
  return lines;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const layersAt = args.indexOf("--layers");
  const layers = layersAt >= 0 ? Number(args[layersAt + 1]) : 12;
  const childAt = args.indexOf("--child");
  if (childAt >= 0) return child(args[childAt + 1], args[childAt + 2], layers);
  for (const line of formatModelsLoad(measureModelsLoad(layers))) console.log(line);
}

// A command of its own (and the child processes' entry point); a module when bench/main.ts imports it.
if (require.main === module) {
  void main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
