/**
 * Batch-1 greedy decoding of a small GPT-2 (default 4 layers, n_embd 256, 4 heads) with the KV
 * cache, against bench/python/gpt2_generate.py (PyTorch eager, the same checkpoint) in the same
 * run: ms per token of each side, interleaved run by run so both see the same machine load, and
 * what one decoding step costs on the JS side: native calls per token, by entry point.
 *
 * Run: node dist/bench/diagnose/decode-profile.js [--vocab N] [--layers N] [--embd N] [--heads N]
 *        [--tokens N] [--runs N] [--lora] [--llama] [--calls]
 * --lora adds unmerged LoRA adapters (r 8) on c_attn (GPT-2) or q_proj/v_proj (Llama);
 * --llama times a Llama of the same width instead (torch-lora only: the Python loop is GPT-2's);
 * --calls prints the native calls of one decoding step by entry point;
 * --cputime times both sides by process CPU time instead of wall-clock time (steadier on a loaded
 * machine; run it with OMP_NUM_THREADS=1, since CPU time adds up every thread's).
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { native } from "../../lib/binding";
import { lora, manualSeed, models, tensor } from "../../lib";

interface Args {
  vocab: number;
  layers: number;
  embd: number;
  heads: number;
  tokens: number;
  runs: number;
  lora: boolean;
  llama: boolean;
  calls: boolean;
  cputime: boolean;
}

function parseArgs(argv: string[]): Args {
  const num = (name: string, fallback: number) => {
    const at = argv.indexOf(`--${name}`);
    return at >= 0 ? Number(argv[at + 1]) : fallback;
  };
  return {
    vocab: num("vocab", 50257),
    layers: num("layers", 4),
    embd: num("embd", 256),
    heads: num("heads", 4),
    tokens: num("tokens", 32),
    runs: num("runs", 5),
    lora: argv.includes("--lora"),
    llama: argv.includes("--llama"),
    calls: argv.includes("--calls"),
    cputime: argv.includes("--cputime"),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Counts calls into the addon, per entry point, while `fn` runs. */
function countNativeCalls(fn: () => void): Map<string, number> {
  const counts = new Map<string, number>();
  const table = native as unknown as Record<string, unknown>;
  const originals = new Map<string, (...a: unknown[]) => unknown>();
  for (const [name, value] of Object.entries(table)) {
    if (typeof value !== "function") continue;
    const f = value as (...a: unknown[]) => unknown;
    originals.set(name, f);
    table[name] = (...a: unknown[]) => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return f(...a);
    };
  }
  try {
    fn();
  } finally {
    for (const [name, f] of originals) table[name] = f;
  }
  return counts;
}

const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  // gpt2_generate.py's prompt is token i·97 mod 50257 for i < its length: keep every id below the vocab.
  const promptLength = Math.max(1, Math.min(16, Math.floor((a.vocab - 1) / 97) + 1));
  const ids = Array.from({ length: promptLength }, (_, i) => (i * 97) % 50257);
  manualSeed(0);
  const model = a.llama
    ? new models.LlamaForCausalLM({
        model_type: "llama",
        vocab_size: a.vocab,
        hidden_size: a.embd,
        intermediate_size: 4 * a.embd,
        num_hidden_layers: a.layers,
        num_attention_heads: a.heads,
        num_key_value_heads: a.heads,
      })
    : new models.GPT2LMHeadModel({ model_type: "gpt2", vocab_size: a.vocab, n_embd: a.embd, n_layer: a.layers, n_head: a.heads });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tl-decode-profile-"));
  try {
    if (!a.llama) await model.savePretrained(dir);
    const lm = a.lora ? lora.injectAdapter(model, { r: 8, loraAlpha: 16, initLoraWeights: "gaussian" }) : model;
    const decoder = (a.lora ? (lm as lora.LoraModel<models.CausalLM>).model : model) as models.CausalLM;
    decoder.eval();
    const prompt = tensor([ids], { dtype: "int64" });
    const now = a.cputime
      ? () => {
          const u = process.cpuUsage();
          return (u.user + u.system) / 1e3;
        }
      : () => Number(process.hrtime.bigint()) / 1e6;
    const perToken = (): number => {
      const t = now();
      decoder.generate(prompt, { maxNewTokens: a.tokens }).dispose();
      return (now() - t) / a.tokens;
    };
    for (let i = 0; i < 3; i++) perToken(); // warm-up

    // One decoding step's calls: a run of n + 1 tokens minus a run of n.
    const callsOf = (n: number) => countNativeCalls(() => decoder.generate(prompt, { maxNewTokens: n }).dispose());
    const short = callsOf(4);
    const long = callsOf(5);
    const step = new Map([...long].map(([k, v]) => [k, v - (short.get(k) ?? 0)] as [string, number]).filter(([, v]) => v > 0));
    const python = process.env.TORCH_LORA_PYTHON ?? "/usr/bin/python3";
    const script = path.join(__dirname, "..", "..", "..", "bench", "python", "gpt2_generate.py");
    const pythonArgs = [...(a.cputime ? [path.join(__dirname, "..", "..", "..", "bench", "diagnose", "cputime.py")] : []), script, dir];
    const ours: number[] = [];
    const theirs: number[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < a.runs; r++) {
      const mine = perToken();
      ours.push(mine);
      if (a.llama || a.lora) continue;
      const py = spawnSync(python, [...pythonArgs, String(promptLength), String(a.tokens)], { encoding: "utf8" });
      if (py.status !== 0) throw new Error(`${script} failed: ${py.stderr}`);
      const ms = (JSON.parse(py.stdout.trim().split("\n").pop() as string) as { msPerToken: number }).msPerToken;
      theirs.push(ms);
      ratios.push(mine / ms);
    }
    const what = a.llama ? "Llama" : "GPT-2";
    console.log(
      `${what} ${a.layers}L d${a.embd} h${a.heads} vocab ${a.vocab}${a.lora ? " + LoRA r8 (unmerged)" : ""}, prompt ${promptLength}, ${a.tokens} new tokens, ${a.cputime ? "CPU" : "wall-clock"} time; load average ${os.loadavg()[0].toFixed(2)}`,
    );
    const line = (xs: number[], digits: number) =>
      `${xs.map((x) => x.toFixed(digits)).join(" ")} (median ${median(xs).toFixed(digits)}, best ${Math.min(...xs).toFixed(digits)})`;
    console.log(`  torch-lora ms/token: ${line(ours, 3)}`);
    if (theirs.length) {
      console.log(`  PyTorch eager ms/token: ${line(theirs, 3)}`);
      console.log(`  ratio per run: ${line(ratios, 2)}; best ÷ best ${(Math.min(...ours) / Math.min(...theirs)).toFixed(2)}`);
    }
    console.log(`  native calls per decoding step: ${total(step)}`);
    if (a.calls) {
      for (const [name, n] of [...step].sort((x, y) => y[1] - x[1])) console.log(`    ${name}: ${n}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
