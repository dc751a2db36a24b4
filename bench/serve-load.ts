/**
 * Load measurement of examples/serve.ts: 16 adapters, closed-loop clients (each sends its next
 * request when the previous one finished) at 1, 8 and 64 concurrent clients, each request a
 * prompt of 8 tokens and 4 generated tokens on a random adapter. Prints requests per second and
 * p50/p99 latency. The clients run in the server's process, on the same event loop, so the
 * figures include their cost. Run: node dist/bench/serve-load.js [requestsPerLevel]
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { request, startServer, writeDemoAdapters } from "../examples/serve";

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function level(port: number, names: string[], clients: number, total: number): Promise<string> {
  const latencies: number[] = [];
  let sent = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      let k = c;
      while (sent < total) {
        sent++;
        k = (k * 7 + 3) % names.length;
        const t = process.hrtime.bigint();
        await request(port, { adapter: names[k], prompt: [1, 2, 3, 4, 5, 6, 7, 8].map((v) => ((v * (k + 1)) % 63) + 1), steps: 4 });
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return `| ${clients} | ${latencies.length} | ${(latencies.length / seconds).toFixed(0)} | ${quantile(latencies, 0.5).toFixed(1)} | ${quantile(latencies, 0.99).toFixed(1)} |`;
}

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 400);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "torch-lora-serve-load-"));
  try {
    const names = writeDemoAdapters(root, 16);
    const server = await startServer({ adapterRoot: root, windowMs: 2 });
    await level(server.port, names, 4, 64); // warm-up: every adapter loaded
    console.log("| clients | requests | req/s | p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|");
    for (const clients of [1, 8, 64]) console.log(await level(server.port, names, clients, total));
    console.log(`batches: ${server.stats.batches}, rows: ${server.stats.rows} (mean ${(server.stats.rows / server.stats.batches).toFixed(1)} per batch)`);
    await server.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

void main();
