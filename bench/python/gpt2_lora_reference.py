"""PyTorch-eager twin of bench/cases/gpt2-lora.ts: transformers' GPT-2 (eager attention, gelu_new,
Conv1D layers) as nn.Modules over a checkpoint folder read with test/models/support/hf_reference.py,
PEFT-style LoRA on every block's c_attn (PEFT's default target for gpt2), a causal-LM loss and AdamW
over the adapter factors only."""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from peft_reference import Conv1DRef, LoraConv1DRef

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "models", "support"))
from hf_reference import additive_mask, attention, gelu_new, load_checkpoint  # noqa: E402


class BlockRef(nn.Module):
    def __init__(self, sd, p, c, r, alpha):
        super().__init__()
        E = c["n_embd"]
        self.E, self.H, self.eps = E, c["n_head"], c.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(E, eps=self.eps)
        self.ln_2 = nn.LayerNorm(E, eps=self.eps)
        for name, ln in (("ln_1", self.ln_1), ("ln_2", self.ln_2)):
            ln.weight.data, ln.bias.data = sd[p + name + ".weight"], sd[p + name + ".bias"]
        conv = lambda name: Conv1DRef(sd[p + name + ".weight"], sd[p + name + ".bias"])
        self.c_attn = LoraConv1DRef(conv("attn.c_attn"), r, alpha)
        self.c_proj = conv("attn.c_proj")
        self.c_fc = conv("mlp.c_fc")
        self.mlp_proj = conv("mlp.c_proj")

    def forward(self, x, mask4d):
        B, T, E = x.shape
        H = self.H
        q, k, v = [t.view(B, T, H, E // H).transpose(1, 2) for t in self.c_attn(self.ln_1(x)).split(E, dim=2)]
        a = attention(q, k, v, mask4d, 1.0 / math.sqrt(E // H)).transpose(1, 2).reshape(B, T, E)
        h = x + self.c_proj(a)
        return h + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(h))))


class GPT2LoraRef(nn.Module):
    def __init__(self, folder, r, alpha):
        super().__init__()
        with open(os.path.join(folder, "config.json")) as f:
            c = json.load(f)
        sd = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in load_checkpoint(folder).items()}
        self.wte = nn.Embedding.from_pretrained(sd["wte.weight"])
        self.wpe = nn.Embedding.from_pretrained(sd["wpe.weight"])
        self.h = nn.ModuleList(BlockRef(sd, f"h.{i}.", c, r, alpha) for i in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(c["n_embd"], eps=c.get("layer_norm_epsilon", 1e-5))
        self.ln_f.weight.data, self.ln_f.bias.data = sd["ln_f.weight"], sd["ln_f.bias"]
        # LoRA training: only the adapter factors train, as PEFT's get_peft_model arranges.
        for name, p in self.named_parameters():
            p.requires_grad_("lora_" in name)

    def forward(self, ids):
        B, T = ids.shape
        h = self.wte(ids) + self.wpe(torch.arange(T))
        mask4d = additive_mask(B, T, None, h.dtype)
        for block in self.h:
            h = block(h, mask4d)
        return F.linear(self.ln_f(h), self.wte.weight)  # lm_head tied to wte


def causal_lm_loss(logits, labels):
    """transformers' ForCausalLMLoss: position t predicts token t+1, in fp32, -100 ignored."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)


def setup(folder, batch, context, r=8, alpha=16):
    """Returns train_step() over a fixed batch of the ids the TypeScript side uses."""
    torch.manual_seed(0)
    model = GPT2LoraRef(folder, r, alpha).train()
    vocab = model.wte.weight.shape[0]
    ids = torch.tensor([(i * 31 + 7) % vocab for i in range(batch * context)]).reshape(batch, context)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def train_step():
        loss = causal_lm_loss(model(ids), ids)
        loss.backward()
        opt.step()
        opt.zero_grad()

    return train_step
