/**
 * Adapters on float16/bfloat16 bases keep float32 factors, as PEFT does by default
 * (`autocast_adapter_dtype=True`): injected and loaded factors are float32, forward computes the
 * low-rank path in float32 and rounds the sum once, merged weights equal PEFT's
 * `W += (B @ A) * s` within one ulp, and saved factors stay F32. `autocastAdapterDtype: false`
 * gives the base's dtype instead. Reference values: PyTorch (bf16 on CPU; libtorch 1.13 has no
 * fp16 matmul on CPU, so fp16 is checked for merges, which need no half matmul).
 */
import * as fs from "fs";
import * as path from "path";
import { Tensor, io, lora, manualSeed, nn, randn, tensor } from "../../lib";
import type { Dtype } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { makeTempDir } from "../helpers/temp";

class Pair extends nn.Module {
  emb: nn.Embedding;
  fc: nn.Linear;
  constructor(dtype: Dtype) {
    super();
    this.emb = new nn.Embedding(24, 16, { dtype });
    this.fc = new nn.Linear(16, 32, { dtype });
  }
}

const values = (t: Tensor): number[] => t.detach().to({ dtype: "float64" }).toList();

/** Largest difference between `a` and `b` in units in the last place of `dtype` (8 mantissa bits for bf16, 11 for fp16). */
function maxUlps(a: number[], b: number[], dtype: "bfloat16" | "float16"): number {
  const digits = dtype === "bfloat16" ? 8 : 11;
  let worst = 0;
  a.forEach((x, i) => {
    const m = Math.max(Math.abs(x), Math.abs(b[i]), dtype === "bfloat16" ? 2 ** -126 : 2 ** -14);
    const ulp = 2 ** (Math.floor(Math.log2(m)) - (digits - 1));
    worst = Math.max(worst, Math.abs(x - b[i]) / ulp);
  });
  return worst;
}

/** Writes a PEFT-layout adapter with float32 factors for Pair (fc and emb), as Python PEFT saves one. */
function writeFp32Adapter(dir: string, r: number, alpha: number): Record<string, Tensor> {
  manualSeed(7);
  const t: Record<string, Tensor> = {
    "base_model.model.fc.lora_A.weight": randn([r, 16]).mul(0.3),
    "base_model.model.fc.lora_B.weight": randn([32, r]).mul(0.3),
    "base_model.model.emb.lora_embedding_A": randn([r, 24]).mul(0.3),
    "base_model.model.emb.lora_embedding_B": randn([16, r]).mul(0.3),
  };
  fs.mkdirSync(dir, { recursive: true });
  io.saveSafetensorsSync(path.join(dir, "adapter_model.safetensors"), t);
  fs.writeFileSync(
    path.join(dir, "adapter_config.json"),
    JSON.stringify({ peft_type: "LORA", r, lora_alpha: alpha, lora_dropout: 0, target_modules: ["fc", "emb"], bias: "none", fan_in_fan_out: false }),
  );
  return t;
}

/** The dtype each header entry of a safetensors file declares, read from the raw bytes. */
function headerDtypes(file: string): Record<string, string> {
  const buf = fs.readFileSync(file);
  const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString("utf8"));
  return Object.fromEntries(
    Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([k, v]) => [k, (v as { dtype: string }).dtype]),
  );
}

let dir: string;
beforeAll(() => {
  dir = makeTempDir("tl-half-");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe.each(["bfloat16", "float16"] as const)("factors on a %s base", (dtype) => {
  test("injection creates float32 factors; autocastAdapterDtype: false keeps the base dtype", () => {
    const lm = lora.injectAdapter(new Pair(dtype), { targetModules: ["fc", "emb"], r: 4 });
    for (const [, layer] of lm.loraLayers()) expect(layer.factors("default").map((f) => f.dtype)).toEqual(["float32", "float32"]);
    expect(
      lm.model
        .namedParameters()
        .filter(([n]) => !n.includes("lora_"))
        .map(([, p]) => p.dtype),
    ).toEqual([dtype, dtype, dtype]);
    const narrow = lora.injectAdapter(new Pair(dtype), { targetModules: ["fc", "emb"], r: 4 }, "default", { autocastAdapterDtype: false });
    for (const [, layer] of narrow.loraLayers()) expect(layer.factors("default").map((f) => f.dtype)).toEqual([dtype, dtype]);
    expect(() => lora.injectAdapter(new Pair(dtype), { targetModules: ["fc"] }, "default", { autocastAdapterDtype: "yes" as unknown as boolean })).toThrow(
      /autocastAdapterDtype: expected a boolean/,
    );
  });

  test("a float32 adapter file loads bit for bit into float32 factors, and saves back as F32", () => {
    const src = path.join(dir, `src-${dtype}`);
    const file = writeFp32Adapter(src, 4, 8);
    const lm = lora.loadAdapter(new Pair(dtype), src);
    const fc = lm.loraLayers().find(([p]) => p === "fc")![1];
    const emb = lm.loraLayers().find(([p]) => p === "emb")![1];
    expect(fc.factors("default")[0].dtype).toBe("float32");
    expect(fc.factors("default")[0].toBytes().equals(file["base_model.model.fc.lora_A.weight"].toBytes())).toBe(true);
    expect(emb.factors("default")[1].toBytes().equals(file["base_model.model.emb.lora_embedding_B"].toBytes())).toBe(true);

    const out = path.join(dir, `out-${dtype}`);
    lm.saveAdapter(out);
    expect(Object.values(headerDtypes(path.join(out, "adapter_model.safetensors")))).toEqual(["F32", "F32", "F32", "F32"]);
    const narrow = lora.loadAdapter(new Pair(dtype), src, { autocastAdapterDtype: false });
    expect(narrow.loraLayers()[0][1].factors("default")[0].dtype).toBe(dtype);
  });

  itTorch("merged weights equal PEFT's W += (B @ A) * s within 1 ulp; unmerge restores the base bit for bit", () => {
    const src = path.join(dir, `merge-${dtype}`);
    const file = writeFp32Adapter(src, 8, 16);
    manualSeed(3);
    const model = new Pair(dtype);
    const before = model.stateDict();
    const W = { fc: values(before["fc.weight"]), emb: values(before["emb.weight"]) };
    const pristine = { fc: before["fc.weight"].clone(), emb: before["emb.weight"].clone() };
    const lm = lora.loadAdapter(model, src);
    lm.merge();
    const merged = { fc: values(lm.model.stateDict()["fc.base_layer.weight"]), emb: values(lm.model.stateDict()["emb.base_layer.weight"]) };
    const ref = py<{ fc: number[]; emb: number[] }>(
      `
dt = getattr(torch, inp['dtype'])
f32 = lambda k, s: torch.tensor(inp[k], dtype=torch.float32).reshape(s)
s = 16 / 8
w = torch.tensor(inp['Wfc']).reshape(32, 16).to(dt)
w += (f32('Bfc', (32, 8)) @ f32('Afc', (8, 16))) * s          # PEFT: Linear.merge, fp32 delta into the half weight
e = torch.tensor(inp['Wemb']).reshape(24, 16).to(dt)
e += ((f32('Bemb', (16, 8)) @ f32('Aemb', (8, 24))).T) * s    # PEFT: Embedding.merge, transpose(B @ A) * s
out = {'fc': L(w), 'emb': L(e)}
`,
      {
        dtype,
        Wfc: W.fc,
        Wemb: W.emb,
        Afc: values(file["base_model.model.fc.lora_A.weight"]),
        Bfc: values(file["base_model.model.fc.lora_B.weight"]),
        Aemb: values(file["base_model.model.emb.lora_embedding_A"]),
        Bemb: values(file["base_model.model.emb.lora_embedding_B"]),
      },
    );
    expect(maxUlps(merged.fc, ref.fc, dtype)).toBeLessThanOrEqual(1);
    expect(maxUlps(merged.emb, ref.emb, dtype)).toBeLessThanOrEqual(1);
    lm.unmerge();
    expect(lm.model.stateDict()["fc.base_layer.weight"].toBytes().equals(pristine.fc.toBytes())).toBe(true);
    expect(lm.model.stateDict()["emb.base_layer.weight"].toBytes().equals(pristine.emb.toBytes())).toBe(true);

    // The opt-out rounds the factors to the base dtype before merging: the error the float32
    // factors avoid, and what this check would have seen before they were kept.
    const plain = new Pair(dtype);
    plain.loadStateDict({ "fc.weight": pristine.fc, "fc.bias": before["fc.bias"], "emb.weight": pristine.emb });
    const narrow = lora.loadAdapter(plain, src, { autocastAdapterDtype: false });
    narrow.merge();
    const narrowFc = values(narrow.model.stateDict()["fc.base_layer.weight"]);
    const narrowEmb = values(narrow.model.stateDict()["emb.base_layer.weight"]);
    console.log(
      `${dtype} merge vs PEFT: float32 factors ≤ ${Math.max(maxUlps(merged.fc, ref.fc, dtype), maxUlps(merged.emb, ref.emb, dtype))} ulp; ` +
        `factors rounded to ${dtype}: ${Math.max(maxUlps(narrowFc, ref.fc, dtype), maxUlps(narrowEmb, ref.emb, dtype))} ulp`,
    );
    expect(Math.max(maxUlps(narrowFc, ref.fc, dtype), maxUlps(narrowEmb, ref.emb, dtype))).toBeGreaterThan(1);
  });
});

describe("forward on a bfloat16 base with float32 factors matches PEFT's numerics", () => {
  itTorch("Linear and Embedding: base output in bf16, low-rank path in fp32 on an fp32 copy of x, the sum rounded once", () => {
    const src = path.join(dir, "fwd");
    const file = writeFp32Adapter(src, 4, 8);
    manualSeed(11);
    const model = new Pair("bfloat16");
    const sd = model.stateDict();
    const lm = lora.loadAdapter(model, src, { isTrainable: true });
    const x = randn([5, 16]).to({ dtype: "bfloat16" });
    const ids = tensor(
      [
        [0, 3, 23],
        [7, 7, 1],
      ],
      { dtype: "int64" },
    );
    const fc = lm.loraLayers().find(([p]) => p === "fc")![1] as lora.LoraLinear;
    const emb = lm.loraLayers().find(([p]) => p === "emb")![1] as lora.LoraEmbedding;
    const y = fc.forward(x);
    const e = emb.forward(ids);
    expect([y.dtype, e.dtype]).toEqual(["bfloat16", "bfloat16"]);
    const ref = py<{ y: number[]; e: number[] }>(
      `
bf = torch.bfloat16
t = lambda k, s, d: torch.tensor(inp[k]).reshape(s).to(d)
x = t('x', (5, 16), bf)
y = torch.nn.functional.linear(x, t('W', (32, 16), bf), t('b', (32,), bf))
y = (y + (x.to(torch.float32) @ t('A', (4, 16), torch.float32).T @ t('B', (32, 4), torch.float32).T) * 2.0).to(bf)
ids = torch.tensor(inp['ids'])
e = torch.nn.functional.embedding(ids, t('E', (24, 16), bf))
e = (e + (torch.nn.functional.embedding(ids, t('EA', (4, 24), torch.float32).T) @ t('EB', (16, 4), torch.float32).T) * 2.0).to(bf)
out = {'y': L(y), 'e': L(e)}
`,
      {
        x: values(x),
        W: values(sd["fc.weight"]),
        b: values(sd["fc.bias"]),
        A: values(file["base_model.model.fc.lora_A.weight"]),
        B: values(file["base_model.model.fc.lora_B.weight"]),
        ids: [
          [0, 3, 23],
          [7, 7, 1],
        ],
        E: values(sd["emb.weight"]),
        EA: values(file["base_model.model.emb.lora_embedding_A"]),
        EB: values(file["base_model.model.emb.lora_embedding_B"]),
      },
    );
    expect(maxUlps(values(y), ref.y, "bfloat16")).toBeLessThanOrEqual(1);
    expect(maxUlps(values(e), ref.e, "bfloat16")).toBeLessThanOrEqual(1);

    // Gradients reach the float32 factors, in float32.
    y.sum().add(e.sum()).backward();
    for (const layer of [fc, emb]) {
      for (const f of layer.factors("default")) {
        expect(f.grad?.dtype).toBe("float32");
        expect(values(f.grad!).some((v) => v !== 0)).toBe(true);
      }
    }
  });
});
