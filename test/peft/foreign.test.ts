/**
 * Adapters laid out as Python PEFT writes them: built by hand here (PEFT's keys, a config with
 * every field PEFT writes plus fields from newer versions), and written by a Python script with
 * torch when one is available. Each must load and give the LoRA formula's output, computed
 * independently.
 */
import * as path from "path";
import { Tensor, io, lora, manualSeed, nn, randn } from "../../lib";
import { itTorch, py } from "../helpers/python";
import { cleanupTmp, ids, pythonStyleConfig, seededModel, tmpDir, writePeftDir } from "./helpers";

afterAll(cleanupTmp);

/** Rows of `w` picked by the ids (plain index_select), shaped like the ids plus the row. */
function lookup(w: Tensor, idx: Tensor): Tensor {
  const flat = idx.reshape([-1]);
  return w.indexSelect(0, flat).reshape([...idx.shape, w.shape[1]]);
}

describe("a hand-built PEFT adapter directory", () => {
  test("loads and gives the formula's output (embedding + Linear, rank and alpha patterns, extra fields)", () => {
    manualSeed(5);
    const A_e = randn([2, 12]),
      B_e = randn([8, 2]);
    const A_1 = randn([4, 8]),
      B_1 = randn([16, 4]);
    const dir = tmpDir();
    writePeftDir(
      dir,
      {
        "base_model.model.emb.lora_embedding_A": A_e,
        "base_model.model.emb.lora_embedding_B": B_e,
        "base_model.model.fc1.lora_A.weight": A_1,
        "base_model.model.fc1.lora_B.weight": B_1,
      },
      pythonStyleConfig({
        r: 4,
        lora_alpha: 16,
        rank_pattern: { emb: 2 },
        alpha_pattern: { fc1: 8 },
        // Fields from later PEFT versions, and one PEFT drops when loading: tolerated.
        some_future_option: { enabled: false },
        // Named like members every object inherits: unknown fields all the same.
        constructor: 1,
        toString: "x",
        runtime_config: { ephemeral_gpu_offload: false },
      }),
    );
    const model = seededModel();
    const W_e = model.emb.weight.detach().clone();
    const W_1 = model.fc1.weight.detach().clone(),
      b_1 = model.fc1.bias!.detach().clone();
    const W_h = model.head.weight.detach().clone(),
      b_h = model.head.bias!.detach().clone();

    const lm = lora.loadAdapter(model, dir);
    const got = lm.forward(ids());

    const s_e = 16 / 2,
      s_1 = 8 / 4;
    const e = lookup(W_e, ids()).add(lookup(A_e.t().contiguous(), ids()).matmul(B_e.t()).mul(s_e));
    const h = e.matmul(W_1.t()).add(b_1).add(e.matmul(A_1.t()).matmul(B_1.t()).mul(s_1)).relu();
    const want = h.matmul(W_h.t()).add(b_h);
    expect(got.allclose(want, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
    // Not trivially true: without the adapter the output differs.
    expect((lm.withAdaptersDisabled(() => lm.forward(ids())) as Tensor).allclose(want, { rtol: 1e-3, atol: 1e-3 })).toBe(false);
    expect(lora.readAdapterConfig(path.join(dir, "adapter_config.json")).ignoredFields).toEqual(["constructor", "some_future_option", "toString"]);
  });

  test("fan_in_fan_out (a GPT-2 Conv1D layer) and a saved base embedding weight", () => {
    manualSeed(6);
    class Net extends nn.Module {
      wte = new nn.Embedding(12, 6);
      c_attn = new nn.Conv1D(5, 6);
      override forward(x: Tensor): Tensor {
        return this.c_attn.forward(this.wte.forward(x));
      }
    }
    const net = new Net();
    const A = randn([3, 6]),
      B = randn([5, 3]);
    const Ae = randn([3, 12]),
      Be = randn([6, 3]);
    // PEFT saves a targeted embedding's base weight too (save_embedding_layers); it replaces ours.
    const newWte = randn([12, 6]);
    const dir = tmpDir();
    writePeftDir(
      dir,
      {
        "base_model.model.c_attn.lora_A.weight": A,
        "base_model.model.c_attn.lora_B.weight": B,
        "base_model.model.wte.lora_embedding_A": Ae,
        "base_model.model.wte.lora_embedding_B": Be,
        "base_model.model.wte.base_layer.weight": newWte,
      },
      pythonStyleConfig({ r: 3, lora_alpha: 6, target_modules: ["c_attn", "wte"], fan_in_fan_out: true, use_rslora: true }),
    );
    const W = net.c_attn.weight.detach().clone(),
      b = net.c_attn.bias.detach().clone();
    const x = ids().narrow(1, 0, 3);
    const lm = lora.loadAdapter(net, dir);
    const s = 6 / Math.sqrt(3);
    const e = lookup(newWte, x).add(lookup(Ae.t().contiguous(), x).matmul(Be.t()).mul(s));
    const want = e.matmul(W).add(b).add(e.matmul(A.t()).matmul(B.t()).mul(s));
    expect(lm.forward(x).allclose(want, { rtol: 1e-5, atol: 1e-5 })).toBe(true);
    expect(net.wte instanceof lora.LoraEmbedding && net.wte.base_layer.weight.equal(newWte)).toBe(true);
  });
});

describe("an adapter directory written by Python", () => {
  itTorch("loads and gives the output PyTorch computes for the same formula", () => {
    const dir = tmpDir();
    const out = py<{ logits: number[]; shape: number[] }>(
      `
import struct, os
torch.manual_seed(0)
f32 = torch.float32
def save(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    if metadata: header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].detach().to(f32).contiguous().reshape(-1)
        b = struct.pack("<%df" % t.numel(), *t.tolist())
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)
d = inp["dir"]
base = {"emb.weight": torch.randn(12, 8, dtype=f32), "fc1.weight": torch.randn(16, 8, dtype=f32) * 0.3,
        "fc1.bias": torch.randn(16, dtype=f32), "head.weight": torch.randn(12, 16, dtype=f32) * 0.2, "head.bias": torch.randn(12, dtype=f32)}
ad = {"base_model.model.emb.lora_embedding_A": torch.randn(4, 12, dtype=f32), "base_model.model.emb.lora_embedding_B": torch.randn(8, 4, dtype=f32),
      "base_model.model.fc1.lora_A.weight": torch.randn(2, 8, dtype=f32), "base_model.model.fc1.lora_B.weight": torch.randn(16, 2, dtype=f32),
      "base_model.model.head.lora_A.weight": torch.randn(4, 16, dtype=f32), "base_model.model.head.lora_B.weight": torch.randn(12, 4, dtype=f32)}
save(os.path.join(d, "base.safetensors"), base, {"format": "pt"})
os.makedirs(os.path.join(d, "adapter"))
save(os.path.join(d, "adapter", "adapter_model.safetensors"), ad, {"format": "pt"})
config = {"peft_type": "LORA", "task_type": None, "r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "target_modules": ["head", "fc1", "emb"],
          "rank_pattern": {"fc1": 2}, "alpha_pattern": {"head": 2}, "use_rslora": False, "fan_in_fan_out": False, "bias": "none",
          "init_lora_weights": True, "modules_to_save": None, "inference_mode": True, "use_dora": False, "layers_to_transform": None,
          "layers_pattern": None, "base_model_name_or_path": None, "revision": None, "megatron_config": None, "megatron_core": "megatron.core",
          "loftq_config": {}, "exclude_modules": None, "lora_bias": False, "peft_version": "0.15.0", "auto_mapping": None}
with open(os.path.join(d, "adapter", "adapter_config.json"), "w") as f:
    f.write(json.dumps(config, indent=2, sort_keys=True))
ids = torch.tensor(inp["ids"])
W = base
P = "base_model.model."
e = W["emb.weight"][ids] + (8 / 4) * (ad[P + "emb.lora_embedding_A"].T[ids] @ ad[P + "emb.lora_embedding_B"].T)
h = e @ W["fc1.weight"].T + W["fc1.bias"] + (8 / 2) * ((e @ ad[P + "fc1.lora_A.weight"].T) @ ad[P + "fc1.lora_B.weight"].T)
h = torch.relu(h)
y = h @ W["head.weight"].T + W["head.bias"] + (2 / 4) * ((h @ ad[P + "head.lora_A.weight"].T) @ ad[P + "head.lora_B.weight"].T)
out = {"logits": L(y), "shape": list(y.shape)}
`,
      {
        dir,
        ids: [
          [1, 2, 0, 3],
          [4, 11, 5, 1],
        ],
      },
    );
    const model = seededModel(99);
    model.loadStateDict(io.loadSafetensorsSync(path.join(dir, "base.safetensors")));
    const lm = lora.loadAdapter(model, path.join(dir, "adapter"));
    const got = lm.forward(ids());
    expect(got.shape).toEqual(out.shape);
    const g = got.toList();
    const maxErr = Math.max(...g.map((v, i) => Math.abs(v - out.logits[i])));
    expect(maxErr).toBeLessThan(1e-4);
    // The dropout of the file is used for training: it was read, and eval mode switches it off.
    expect(Object.fromEntries(lm.loraLayers()).fc1.settings("default")!.dropout).toBeCloseTo(0.1);
  });
});
