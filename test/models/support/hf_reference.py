"""
An independent reference for the models tests, over plain PyTorch (no transformers here): GPT-2
and Llama-family forwards written from the semantics of transformers' modeling_gpt2.py and
modeling_llama.py (eager attention, gelu_new, rotate_half RoPE, repeat_kv, LlamaRMSNorm in fp32),
PEFT-style LoRA on top, a minimal safetensors reader/writer, and a random checkpoint writer in
the Hugging Face layout.

Reads one JSON request on stdin and prints one JSON answer.
"""
import json
import math
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = bytearray(data[8 + n + a:8 + n + b])
        dtype = DTYPES[info["dtype"]]
        t = torch.frombuffer(raw, dtype=dtype) if len(raw) else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_checkpoint(folder):
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    sd = {}
    for name in files:
        sd.update(read_safetensors(os.path.join(folder, name)))
    return sd


# ---------------------------------------------------------------- checkpoints

def gpt2_state(c, g):
    E, V, P, L = c["n_embd"], c["vocab_size"], c["n_positions"], c["n_layer"]
    inner = c.get("n_inner") or 4 * E
    r = lambda *s, std=0.2: torch.randn(*s, generator=g) * std
    sd = {"wte.weight": r(V, E, std=0.5), "wpe.weight": r(P, E, std=0.3), "ln_f.weight": 1 + r(E, std=0.1), "ln_f.bias": r(E, std=0.1)}
    for i in range(L):
        p = f"h.{i}."
        sd.update({
            p + "ln_1.weight": 1 + r(E, std=0.1), p + "ln_1.bias": r(E, std=0.1),
            p + "attn.c_attn.weight": r(E, 3 * E), p + "attn.c_attn.bias": r(3 * E, std=0.1),
            p + "attn.c_proj.weight": r(E, E), p + "attn.c_proj.bias": r(E, std=0.1),
            p + "ln_2.weight": 1 + r(E, std=0.1), p + "ln_2.bias": r(E, std=0.1),
            p + "mlp.c_fc.weight": r(E, inner), p + "mlp.c_fc.bias": r(inner, std=0.1),
            p + "mlp.c_proj.weight": r(inner, E), p + "mlp.c_proj.bias": r(E, std=0.1),
            # the buffers published GPT-2 checkpoints carry
            p + "attn.bias": torch.tril(torch.ones(P, P)).view(1, 1, P, P), p + "attn.masked_bias": torch.tensor(-1e4),
        })
    return sd


def llama_state(c, g):
    E, V, L = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
    H, Hkv = c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"]
    D = c.get("head_dim") or E // H
    I = c["intermediate_size"]
    qkv_bias = c.get("attention_bias", False) or c["model_type"] == "qwen2"
    o_bias = c.get("attention_bias", False) and c["model_type"] != "qwen2"
    r = lambda *s, std=0.2: torch.randn(*s, generator=g) * std
    sd = {"model.embed_tokens.weight": r(V, E, std=0.5), "model.norm.weight": 1 + r(E, std=0.1)}
    if not c.get("tie_word_embeddings", False):
        sd["lm_head.weight"] = r(V, E)
    for i in range(L):
        p = f"model.layers.{i}."
        sd.update({
            p + "input_layernorm.weight": 1 + r(E, std=0.1), p + "post_attention_layernorm.weight": 1 + r(E, std=0.1),
            p + "self_attn.q_proj.weight": r(H * D, E), p + "self_attn.k_proj.weight": r(Hkv * D, E),
            p + "self_attn.v_proj.weight": r(Hkv * D, E), p + "self_attn.o_proj.weight": r(E, H * D),
            p + "mlp.gate_proj.weight": r(I, E), p + "mlp.up_proj.weight": r(I, E), p + "mlp.down_proj.weight": r(E, I),
        })
        if qkv_bias:
            for n, size in (("q", H * D), ("k", Hkv * D), ("v", Hkv * D)):
                sd[p + f"self_attn.{n}_proj.bias"] = r(size, std=0.1)
        if o_bias:
            sd[p + "self_attn.o_proj.bias"] = r(E, std=0.1)
        if c.get("mlp_bias", False):
            sd[p + "mlp.gate_proj.bias"], sd[p + "mlp.up_proj.bias"], sd[p + "mlp.down_proj.bias"] = r(I, std=0.1), r(I, std=0.1), r(E, std=0.1)
    return sd


def make_checkpoint(req):
    c, folder = req["config"], req["dir"]
    g = torch.Generator().manual_seed(req.get("seed", 0))
    sd = gpt2_state(c, g) if c["model_type"] == "gpt2" else llama_state(c, g)
    if c["model_type"] == "gpt2" and req.get("prefix", False):
        sd = {("transformer." + k): v for k, v in sd.items()}
    dtype = DTYPES[req.get("dtype", "F32")]
    sd = {k: (v.to(dtype) if v.is_floating_point() and v.dim() > 0 and not k.endswith("attn.bias") else v) for k, v in sd.items()}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(c, f)
    shards = req.get("shards", 1)
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), sd)
    else:
        names, weight_map = sorted(sd), {}
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: sd[k] for k in names[s::shards]}
            write_safetensors(os.path.join(folder, file), part)
            weight_map.update({k: file for k in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return {"keys": sorted(sd)}


# ---------------------------------------------------------------- models

def positions_of(ids, mask):
    B, T = ids.shape
    if mask is None:
        return torch.arange(T).unsqueeze(0).expand(B, T)
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def additive_mask(B, T, mask, dtype):
    """transformers' 4D causal mask: 0 where attended, finfo.min elsewhere."""
    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool)).unsqueeze(0).unsqueeze(0).expand(B, 1, T, T)
    if mask is not None:
        allowed = allowed & mask.bool()[:, None, None, :]
    return torch.zeros(B, 1, T, T, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def linear(x, sd, name, lora, fan_in_fan_out=False):
    w = sd[name + ".weight"]
    b = sd.get(name + ".bias")
    y = x @ w if fan_in_fan_out else x @ w.t()
    if b is not None:
        y = y + b
    if lora is not None and name in lora["A"]:
        A, Bm = lora["A"][name], lora["B"][name]
        y = y + (x @ A.t() @ Bm.t()) * lora["scaling"]
    return y


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attention(q, k, v, mask4d, scaling):
    w = (q @ k.transpose(2, 3)) * scaling + mask4d
    w = torch.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
    return w @ v


def gpt2_forward(c, sd, ids, mask, lora):
    strip = lambda k: k[len("transformer."):] if k.startswith("transformer.") else k
    sd = {strip(k): v for k, v in sd.items()}
    if lora is not None:
        lora = dict(lora, A={strip(k): v for k, v in lora["A"].items()}, B={strip(k): v for k, v in lora["B"].items()})
    E, H, eps = c["n_embd"], c["n_head"], c.get("layer_norm_epsilon", 1e-5)
    D = E // H
    B, T = ids.shape
    h = sd["wte.weight"][ids] + sd["wpe.weight"][positions_of(ids, mask)]
    m4 = additive_mask(B, T, mask, h.dtype)
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (E,), sd[p + ".weight"], sd[p + ".bias"], eps)
    for i in range(c["n_layer"]):
        p = f"h.{i}."
        qkv = linear(ln(h, p + "ln_1"), sd, p + "attn.c_attn", lora, True)
        q, k, v = [t.view(B, T, H, D).transpose(1, 2) for t in qkv.split(E, dim=2)]
        a = attention(q, k, v, m4, 1.0 / math.sqrt(D)).transpose(1, 2).reshape(B, T, E)
        h = h + linear(a, sd, p + "attn.c_proj", lora, True)
        f = gelu_new(linear(ln(h, p + "ln_2"), sd, p + "mlp.c_fc", lora, True))
        h = h + linear(f, sd, p + "mlp.c_proj", lora, True)
    h = ln(h, "ln_f")
    return h @ sd["wte.weight"].t()


def rms_norm(x, w, eps):
    dtype = x.dtype
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return w * x32.to(dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def llama_forward(c, sd, ids, mask, lora):
    E, H = c["hidden_size"], c["num_attention_heads"]
    Hkv = c.get("num_key_value_heads") or H
    D = c.get("head_dim") or E // H
    eps, theta = c.get("rms_norm_eps", 1e-6), c.get("rope_theta", 10000.0)
    B, T = ids.shape
    h = sd["model.embed_tokens.weight"][ids]
    m4 = additive_mask(B, T, mask, h.dtype)
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    pos = positions_of(ids, mask)
    freqs = (inv_freq[None, :, None].expand(B, -1, 1) @ pos[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(h.dtype).unsqueeze(1), emb.sin().to(h.dtype).unsqueeze(1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, sd[p + "input_layernorm.weight"], eps)
        q = linear(x, sd, p + "self_attn.q_proj", lora).view(B, T, H, D).transpose(1, 2)
        k = linear(x, sd, p + "self_attn.k_proj", lora).view(B, T, Hkv, D).transpose(1, 2)
        v = linear(x, sd, p + "self_attn.v_proj", lora).view(B, T, Hkv, D).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // Hkv, dim=1)  # repeat_kv: query head h uses kv head h // n_rep
        v = v.repeat_interleave(H // Hkv, dim=1)
        a = attention(q, k, v, m4, D ** -0.5).transpose(1, 2).reshape(B, T, H * D)
        h = h + linear(a, sd, p + "self_attn.o_proj", lora)
        x = rms_norm(h, sd[p + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(linear(x, sd, p + "mlp.gate_proj", lora))
        h = h + linear(gate * linear(x, sd, p + "mlp.up_proj", lora), sd, p + "mlp.down_proj", lora)
    h = rms_norm(h, sd["model.norm.weight"], eps)
    head = sd["model.embed_tokens.weight"] if c.get("tie_word_embeddings", False) else sd["lm_head.weight"]
    return h @ head.t()


def forward(c, sd, ids, mask, lora=None):
    return gpt2_forward(c, sd, ids, mask, lora) if c["model_type"] == "gpt2" else llama_forward(c, sd, ids, mask, lora)


def read_lora(folder, dtype):
    """A PEFT adapter folder: adapter_config.json + adapter_model.safetensors, keys base_model.model.<path>.lora_A.weight."""
    with open(os.path.join(folder, "adapter_config.json")) as f:
        cfg = json.load(f)
    tensors = read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    A, B = {}, {}
    for k, t in tensors.items():
        path = k[len("base_model.model."):]
        if path.endswith(".lora_A.weight"):
            A[path[: -len(".lora_A.weight")]] = t.to(dtype).requires_grad_()
        elif path.endswith(".lora_B.weight"):
            B[path[: -len(".lora_B.weight")]] = t.to(dtype).requires_grad_()
    return {"A": A, "B": B, "scaling": cfg["lora_alpha"] / cfg["r"], "config": cfg}


def L(t):
    return t.detach().double().reshape(-1).tolist()


def make_adapter(req):
    """A PEFT-layout LoRA adapter with random factors on the modules `targets` (by full path)."""
    folder = req["dir"]
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    sd = load_checkpoint(folder)
    g = torch.Generator().manual_seed(req.get("seed", 1))
    r, tensors = req["r"], {}
    for path in req["targets"]:
        key = path + ".weight"
        w = sd[key] if key in sd else sd[key[len("transformer."):]]
        out_f, in_f = (w.shape[1], w.shape[0]) if c["model_type"] == "gpt2" else tuple(w.shape)
        tensors[f"base_model.model.{path}.lora_A.weight"] = torch.randn(r, in_f, generator=g) * 0.3
        tensors[f"base_model.model.{path}.lora_B.weight"] = torch.randn(out_f, r, generator=g) * 0.3
    os.makedirs(req["out"], exist_ok=True)
    write_safetensors(os.path.join(req["out"], "adapter_model.safetensors"), tensors)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": folder, "r": r, "lora_alpha": req["alpha"],
        "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": c["model_type"] == "gpt2", "target_modules": sorted({p.split(".")[-1] for p in req["targets"]}),
        "init_lora_weights": True, "use_rslora": False, "use_dora": False, "modules_to_save": None, "inference_mode": True,
        "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None, "layers_pattern": None, "revision": None,
    }
    with open(os.path.join(req["out"], "adapter_config.json"), "w") as f:
        json.dump(config, f)
    return {}


def run(req):
    if req["op"] == "make":
        return make_checkpoint(req)
    if req["op"] == "make_adapter":
        return make_adapter(req)
    folder = req["dir"]
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    dtype = getattr(torch, req.get("dtype", "float32"))
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_checkpoint(folder).items()}
    ids = torch.tensor(req["ids"], dtype=torch.int64)
    mask = torch.tensor(req["mask"], dtype=torch.int64) if req.get("mask") is not None else None
    if req["op"] == "forward":
        lora = read_lora(req["adapter"], dtype) if req.get("adapter") else None
        logits = forward(c, sd, ids, mask, lora)
        out = {"logits": L(logits), "shape": list(logits.shape)}
        if req.get("labels") is not None:
            labels = torch.tensor(req["labels"], dtype=torch.int64)
            V = logits.shape[-1]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)
            out["loss"] = loss.item()
            if lora is not None:
                loss.backward()
                out["gradA"] = {k: L(v.grad) for k, v in lora["A"].items()}
                out["gradB"] = {k: L(v.grad) for k, v in lora["B"].items()}
        return out
    if req["op"] == "greedy":
        # The argmax loop without a cache: every step recomputes the whole sequence.
        cur, cur_mask = ids, mask
        with torch.no_grad():
            for _ in range(req["steps"]):
                nxt = forward(c, sd, cur, cur_mask)[:, -1].argmax(-1, keepdim=True)
                cur = torch.cat([cur, nxt], 1)
                if cur_mask is not None:
                    cur_mask = torch.cat([cur_mask, torch.ones_like(nxt)], 1)
        return {"ids": cur.tolist()}
    raise ValueError(req["op"])


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.stdin.read()))))
