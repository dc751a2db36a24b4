/**
 * Pretrained-model figures: load time and peak resident memory of `models.fromPretrained` on a
 * GPT-2-small-sized checkpoint (124M parameters, about 500 MB in fp32), single-file and sharded,
 * against the file size and a baseline process; then batch-1 greedy generation in ms/token with
 * the KV cache, next to the argmax loop without a cache in the same run.
 *
 * Each measurement runs in a fresh child process, so the peak RSS is that of the load alone.
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

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const layersAt = args.indexOf("--layers");
  const layers = layersAt >= 0 ? Number(args[layersAt + 1]) : 12;
  const childAt = args.indexOf("--child");
  if (childAt >= 0) return child(args[childAt + 1], args[childAt + 2], layers);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tl-models-bench-"));
  try {
    run("write", dir, layers);
    const base = run("baseline", dir, layers);
    const single = run("load+generate", path.join(dir, "single"), layers);
    const sharded = run("load", path.join(dir, "sharded"), layers);
    const size = folderBytes(path.join(dir, "single")) / MB;
    console.log(`GPT-2 (${layers} layers, n_embd 768, fp32): checkpoint ${size.toFixed(0)} MB; baseline process peak RSS ${base.maxRss.toFixed(0)} MB`);
    for (const [name, r] of [
      ["model.safetensors", single],
      ["5 shards of <= 100 MB", sharded],
    ] as const) {
      const extra = r.maxRss - base.maxRss;
      console.log(
        `  ${name}: load ${r.loadMs.toFixed(0)} ms, peak RSS ${r.maxRss.toFixed(0)} MB (+${extra.toFixed(0)} MB over baseline = ${(extra / size).toFixed(2)}x the file size)`,
      );
    }
    console.log(
      `  greedy batch 1, 16-token prompt, 32 new tokens: ${single.cachedMsPerToken.toFixed(1)} ms/token with the KV cache, ${single.uncachedMsPerToken.toFixed(1)} ms/token recomputing without it`,
    );
    const python = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";
    const py = spawnSync(python, [path.join(__dirname, "..", "..", "bench", "python", "gpt2_generate.py"), path.join(dir, "single"), "16", "32"], {
      encoding: "utf8",
    });
    if (py.status === 0) {
      const ms = (JSON.parse(py.stdout.trim().split("\n").pop() as string) as { msPerToken: number }).msPerToken;
      console.log(
        `  PyTorch eager with a KV cache, same checkpoint: ${ms.toFixed(1)} ms/token (torch-lora / PyTorch = ${(single.cachedMsPerToken / ms).toFixed(2)})`,
      );
    } else {
      console.log(`  (no PyTorch comparison: ${python} failed: ${py.stderr.trim().split("\n").pop()})`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
