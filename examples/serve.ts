/**
 * A multi-adapter LoRA server to copy: one base model, many adapters loaded on demand from a
 * folder (an {@link lora.AdapterRegistry} with a memory budget), and an HTTP endpoint on Node's
 * `http` that micro-batches concurrent requests across adapters. Requests that arrive within a
 * short window form one batch whose rows each use their own adapter
 * (`withAdapterNames`), so 16 tenants cost one forward per step, not 16. Tokens stream back as
 * they are generated, one JSON object per line.
 *
 *   POST /generate  {"adapter": "tenant-3", "prompt": [4, 8, 15], "steps": 8}
 *   → {"token": 16}\n {"token": 23}\n ... {"done": true, "tokens": [16, 23, ...]}\n
 *
 * `"adapter": "__base__"` uses the base model. Run from the repository (it writes demo adapters
 * to a temporary folder first): npm run setup && node dist/examples/serve.js [port]
 * In your own project, import from "torch-lora" instead of "../lib".
 */
import * as fs from "fs";
import * as http from "http";
import * as os from "os";
import * as path from "path";
import { AddressInfo } from "net";
import { Tensor, init, lora, manualSeed, nn, noGrad, tensor } from "../lib";

/** A tiny next-token model: the mean embedding of the last `context` tokens → hidden → logits. */
export class TinyLM extends nn.Module {
  emb: nn.Embedding;
  hidden: nn.Linear;
  head: nn.Linear;
  constructor(
    readonly vocab = 64,
    readonly context = 8,
    dim = 32,
  ) {
    super();
    this.emb = new nn.Embedding(vocab, dim, { paddingIdx: 0 });
    this.hidden = new nn.Linear(dim, dim);
    this.head = new nn.Linear(dim, vocab);
  }
  /** ids (batch, context) → logits (batch, vocab). */
  override forward(ids: Tensor): Tensor {
    return this.head.forward(this.hidden.forward(this.emb.forward(ids).mean(1)).tanh());
  }
}

/** The last `context` tokens of each sequence, left-padded with 0, as one (rows, context) tensor. */
function window(sequences: number[][], context: number): Tensor {
  return tensor(
    sequences.map((s) => {
      const tail = s.slice(-context);
      return [...new Array<number>(context - tail.length).fill(0), ...tail];
    }),
    { dtype: "int64" },
  );
}

/**
 * Greedy generation for a batch whose rows use their own adapters: one batched forward per step.
 * `onToken(row, token)` is called as each step's tokens are chosen; the event loop turns between
 * steps, so other batches interleave and tokens stream out.
 */
export async function generate(
  model: lora.LoraModel<TinyLM> | TinyLM,
  adapters: string[],
  prompts: number[][],
  steps: number[],
  onToken: (row: number, token: number) => void = () => undefined,
): Promise<number[][]> {
  const sequences = prompts.map((p) => p.slice());
  const out = prompts.map(() => [] as number[]);
  const longest = Math.max(...steps);
  for (let step = 0; step < longest; step++) {
    const ids = window(sequences, model instanceof TinyLM ? model.context : model.model.context);
    // A plain TinyLM (no adapter loaded yet) serves "__base__" rows only.
    const logits = noGrad(() => (model instanceof TinyLM ? model.forward(ids) : model.withAdapterNames(adapters, () => model.forward(ids))));
    const next = logits.argmax(1).toList() as number[];
    logits.dispose();
    ids.dispose();
    next.forEach((token, row) => {
      if (step >= steps[row]) return;
      sequences[row].push(token);
      out[row].push(token);
      onToken(row, token);
    });
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return out;
}

/** One request as the server queues it. */
interface Pending {
  adapter: string;
  prompt: number[];
  steps: number;
  res: http.ServerResponse;
}

/** Options of {@link startServer}. */
export interface ServeOptions {
  /** The folder of adapter folders the registry loads from. */
  adapterRoot: string;
  /** The base model (default: a seeded TinyLM). */
  base?: TinyLM;
  /** Bytes of adapter factors kept loaded (default: no limit). */
  memoryBudget?: number;
  /** How long the first request of a batch waits for others, in ms (default 2). */
  windowMs?: number;
  /** Most rows in one batch (default 64). */
  maxBatch?: number;
  /** Port on 127.0.0.1 (default 0: an ephemeral one). */
  port?: number;
}

/** A running server: its address, registry, batching counts and a close(). */
export interface Server {
  port: number;
  registry: lora.AdapterRegistry<TinyLM>;
  /** Batches run and the requests (rows) they held. */
  stats: { batches: number; rows: number };
  close(): Promise<void>;
}

function fail(res: http.ServerResponse, status: number, message: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: message }) + "\n");
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      body += chunk;
      if (body.length > 1 << 16) reject(new Error("request body above 64 KiB"));
    });
    req.on("end", () => {
      try {
        resolve(JSON.parse(body));
      } catch {
        reject(new Error("request body is not JSON"));
      }
    });
    req.on("error", reject);
  });
}

/** Checks a request body; returns the pending entry's fields or an error message. */
function parseRequest(body: unknown, vocab: number, adapters: string[]): Omit<Pending, "res"> | string {
  if (body === null || typeof body !== "object") return "expected a JSON object";
  const { adapter, prompt, steps = 1 } = body as Record<string, unknown>;
  if (typeof adapter !== "string" || (adapter !== "__base__" && !adapters.includes(adapter)))
    return `adapter: expected one of __base__, ${adapters.join(", ")}`;
  if (!Array.isArray(prompt) || prompt.length === 0 || !prompt.every((t) => Number.isInteger(t) && t >= 0 && t < vocab)) {
    return `prompt: expected a non-empty array of token ids in [0, ${vocab})`;
  }
  if (!Number.isInteger(steps) || (steps as number) < 1 || (steps as number) > 256) return "steps: expected an integer in [1, 256]";
  return { adapter, prompt: prompt as number[], steps: steps as number };
}

/** Starts the server; resolves once it listens. */
export async function startServer(options: ServeOptions): Promise<Server> {
  const base = options.base ?? (manualSeed(0), new TinyLM());
  const registry = new lora.AdapterRegistry<TinyLM>(base, options.adapterRoot, { memoryBudget: options.memoryBudget });
  const available = registry.available();
  const windowMs = options.windowMs ?? 2;
  const maxBatch = options.maxBatch ?? 64;
  const queue: Pending[] = [];
  let timer: NodeJS.Timeout | null = null;

  const stats = { batches: 0, rows: 0 };
  const runBatch = async (batch: Pending[]): Promise<void> => {
    stats.batches++;
    stats.rows += batch.length;
    const names = batch.map((p) => p.adapter);
    try {
      // Adapters not loaded yet are read from disk without blocking the other batches.
      await registry.useAsync(names, async (loaded) => {
        const model = loaded ?? base;
        for (const p of batch) p.res.writeHead(200, { "content-type": "application/x-ndjson" });
        const tokens = await generate(
          model,
          names,
          batch.map((p) => p.prompt),
          batch.map((p) => p.steps),
          (row, token) => {
            batch[row].res.write(JSON.stringify({ token }) + "\n");
          },
        );
        batch.forEach((p, row) => p.res.end(JSON.stringify({ done: true, tokens: tokens[row] }) + "\n"));
      });
    } catch (err) {
      for (const p of batch) {
        if (p.res.headersSent) p.res.end(JSON.stringify({ error: (err as Error).message }) + "\n");
        else fail(p.res, 500, (err as Error).message);
      }
    }
  };

  const flush = (): void => {
    timer = null;
    while (queue.length) void runBatch(queue.splice(0, maxBatch));
  };

  // A model without any adapter loaded yet has no LoraModel: the first batch loads one.
  const server = http.createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/generate") return fail(res, 404, "POST /generate only");
    readJson(req).then(
      (body) => {
        const parsed = parseRequest(body, base.vocab, available);
        if (typeof parsed === "string") return fail(res, 400, parsed);
        queue.push({ ...parsed, res });
        if (queue.length >= maxBatch) flush();
        else timer ??= setTimeout(flush, windowMs);
      },
      (err: Error) => fail(res, 400, err.message),
    );
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    registry,
    stats,
    close: () => new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}

/** Sends one request and collects the streamed lines: the tokens as they came, and the final list. */
export function request(port: number, body: { adapter: string; prompt: number[]; steps?: number }): Promise<{ streamed: number[]; tokens: number[] }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/generate", headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        const lines = text
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { token?: number; done?: boolean; tokens?: number[]; error?: string });
        const last = lines[lines.length - 1];
        if (res.statusCode !== 200 || !last?.done) return reject(new Error(`HTTP ${res.statusCode}: ${last?.error ?? text}`));
        resolve({ streamed: lines.filter((l) => l.token !== undefined).map((l) => l.token!), tokens: last.tokens! });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

/** Writes `count` demo adapters (random factors, rank 4..11) for TinyLM to `root`. */
export function writeDemoAdapters(root: string, count: number, base: TinyLM = (manualSeed(0), new TinyLM())): string[] {
  const names: string[] = [];
  for (let k = 0; k < count; k++) {
    const lm = lora.injectAdapter(base, { r: 4 + (k % 8), loraAlpha: 8, targetModules: ["emb", "hidden", "head"] }, "default");
    manualSeed(1000 + k);
    for (const [, l] of lm.loraLayers()) for (const f of l.factors("default")) noGrad(() => init.normal_(f, 0, 0.3));
    const name = `tenant-${k}`;
    lm.saveAdapter(path.join(root, name));
    lm.unload();
    names.push(name);
  }
  return names;
}

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "torch-lora-serve-"));
  const names = writeDemoAdapters(root, 16);
  const server = await startServer({ adapterRoot: root, port: Number(process.argv[2] ?? 8080) });
  console.log(`listening on http://127.0.0.1:${server.port}/generate with adapters ${names.join(", ")} (from ${root})`);
  console.log(`try: curl -s -X POST localhost:${server.port}/generate -d '{"adapter":"tenant-3","prompt":[1,2,3],"steps":5}'`);
}

if (require.main === module) void main();
