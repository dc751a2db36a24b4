"""
PyTorch-eager baseline for batch-1 greedy GPT-2 decoding with a key/value cache (transformers'
layer_past: keys and values concatenated each step), on a checkpoint folder. `make_generator`
gives the loop to the benchmark harness (bench/cases/gpt2-generate.ts); run as a script it times
it per token and prints {"msPerToken": ...} (bench/models-load.ts).
Usage: gpt2_generate.py <checkpoint dir> <prompt length> <new tokens>
"""
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "test", "models", "support"))
from hf_reference import gelu_new, load_checkpoint  # noqa: E402


def make_generator(folder, prompt_len):
    """generate(n): n greedy tokens after a fixed prompt of prompt_len ids ((i * 97) mod vocab), without autograd."""
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    sd = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in load_checkpoint(folder).items()}
    E, H, L, eps = c.get("n_embd", 768), c.get("n_head", 12), c.get("n_layer", 12), c.get("layer_norm_epsilon", 1e-5)
    D = E // H
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (E,), sd[p + ".weight"], sd[p + ".bias"], eps)
    conv = lambda x, p: torch.addmm(sd[p + ".bias"], x.view(-1, x.shape[-1]), sd[p + ".weight"]).view(*x.shape[:-1], -1)

    def step(ids, past, start):
        T = ids.shape[1]
        h = sd["wte.weight"][ids] + sd["wpe.weight"][torch.arange(start, start + T)]
        for i in range(L):
            p = f"h.{i}."
            q, k, v = [t.view(1, T, H, D).transpose(1, 2) for t in conv(ln(h, p + "ln_1"), p + "attn.c_attn").split(E, dim=2)]
            if past[i] is not None:
                k, v = torch.cat([past[i][0], k], 2), torch.cat([past[i][1], v], 2)
            past[i] = (k, v)
            w = (q @ k.transpose(2, 3)) / math.sqrt(D)
            if T > 1:
                w = w.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), torch.finfo(w.dtype).min)
            a = (w.softmax(-1) @ v).transpose(1, 2).reshape(1, T, E)
            h = h + conv(a, p + "attn.c_proj")
            h = h + conv(gelu_new(conv(ln(h, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
        return ln(h, "ln_f")[:, -1] @ sd["wte.weight"].t()

    vocab = sd["wte.weight"].shape[0]

    @torch.no_grad()
    def generate(n):
        ids = torch.tensor([[(i * 97) % vocab for i in range(prompt_len)]])
        past = [None] * L
        logits = step(ids, past, 0)
        for s in range(n):
            nxt = logits.argmax(-1, keepdim=True)
            if s == n - 1:
                break
            logits = step(nxt, past, prompt_len + s)

    return generate


def main():
    folder, prompt_len, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    generate = make_generator(folder, prompt_len)
    generate(4)
    t = time.perf_counter()
    generate(steps)
    print(json.dumps({"msPerToken": (time.perf_counter() - t) * 1000 / steps}))


if __name__ == "__main__":
    main()
