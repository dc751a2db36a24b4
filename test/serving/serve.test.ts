import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { Tensor, lora, manualSeed, noGrad, tensor } from "../../lib";
import { Server, TinyLM, request, startServer, writeDemoAdapters } from "../../examples/serve";
import { makeTempDir } from "../helpers/temp";

const root = makeTempDir("tl-serve-");
let names: string[] = [];
let server: Server;
let reference: lora.LoraModel<TinyLM>;

beforeAll(async () => {
  names = writeDemoAdapters(root, 16);
  server = await startServer({ adapterRoot: root, windowMs: 3, memoryBudget: Infinity });
  // The independent path: every adapter loaded the plain way, one request at a time, one active adapter.
  manualSeed(0);
  const base = new TinyLM();
  reference = lora.loadAdapter(base, path.join(root, names[0]), { adapterName: names[0] });
  for (const n of names.slice(1)) lora.loadAdapter(reference, path.join(root, n), { adapterName: n });
});

afterAll(async () => {
  await server?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Greedy tokens of one request, computed alone with the adapter set active (no mixed batch). */
function expectedTokens(adapter: string, prompt: number[], steps: number): number[] {
  const seq = prompt.slice();
  const out: number[] = [];
  const context = reference.model.context;
  for (let s = 0; s < steps; s++) {
    const tail = seq.slice(-context);
    const ids = tensor([[...new Array<number>(context - tail.length).fill(0), ...tail]], { dtype: "int64" });
    const logits = noGrad(() =>
      adapter === "__base__"
        ? reference.withAdaptersDisabled(() => reference.forward(ids) as Tensor)
        : (reference.setAdapter(adapter), reference.forward(ids) as Tensor),
    );
    const token = logits.argmax(1).toList()[0] as number;
    seq.push(token);
    out.push(token);
  }
  return out;
}

/** A small deterministic generator, so that a failure can be replayed. */
function lcg(seed: number): () => number {
  let x = seed;
  return () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
}

test("concurrent clients across 16 adapters: no response lost or mixed up, each equals its single-request result", async () => {
  const clients = 8;
  const perClient = 6;
  const sent: { adapter: string; prompt: number[]; steps: number }[] = [];
  const received: { streamed: number[]; tokens: number[] }[] = [];
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const rand = lcg(c + 1);
      for (let i = 0; i < perClient; i++) {
        const adapter = rand() < 0.1 ? "__base__" : names[Math.floor(rand() * names.length)];
        const prompt = Array.from({ length: 1 + Math.floor(rand() * 10) }, () => 1 + Math.floor(rand() * 63));
        const steps = 1 + Math.floor(rand() * 6);
        const body = { adapter, prompt, steps };
        const k = sent.push(body) - 1;
        received[k] = await request(server.port, body);
      }
    }),
  );
  expect(received.filter(Boolean)).toHaveLength(clients * perClient);
  sent.forEach((body, k) => {
    expect(received[k].tokens).toEqual(expectedTokens(body.adapter, body.prompt, body.steps));
    expect(received[k].streamed).toEqual(received[k].tokens);
  });
  // The requests really shared batches.
  expect(server.stats.rows).toBe(clients * perClient);
  expect(server.stats.batches).toBeLessThan(clients * perClient);
}, 120_000);

test("bad requests get a 400 naming the field", async () => {
  const post = (body: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port: server.port, method: "POST", path: "/generate" }, (res) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, text }));
      });
      req.on("error", reject);
      req.end(body);
    });
  expect(await post("{")).toEqual({ status: 400, text: expect.stringMatching(/not JSON/) });
  expect(await post(JSON.stringify({ adapter: "nope", prompt: [1] }))).toEqual({
    status: 400,
    text: expect.stringMatching(/adapter: expected one of __base__, tenant-0/),
  });
  expect(await post(JSON.stringify({ adapter: names[0], prompt: [999] }))).toEqual({ status: 400, text: expect.stringMatching(/prompt: expected/) });
  expect(await post(JSON.stringify({ adapter: names[0], prompt: [1], steps: 0 }))).toEqual({ status: 400, text: expect.stringMatching(/steps: expected/) });
});
