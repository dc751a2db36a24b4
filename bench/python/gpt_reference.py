"""PyTorch-eager twin of bench/cases/gpt-fixture.ts: the same small GPT with the same ops in
the same order (layer norm from mean/sub/mul, heads by reshape/transpose, an additive causal
mask, GELU MLP) and PEFT-style LoRA on every block's c_attn and c_proj."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from peft_reference import LoraLinearRef

LAYERS, DIM, HEADS, CONTEXT, BATCH, VOCAB, R = 4, 256, 4, 128, 8, 512, 8


class LayerNormRef(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        centered = x.sub(x.mean(-1, keepdim=True))
        variance = centered.mul(centered).mean(-1, keepdim=True)
        return centered.div(variance.add(1e-5).sqrt()).mul(self.weight).add(self.bias)


class BlockRef(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = LayerNormRef(DIM)
        self.c_attn = LoraLinearRef(nn.Linear(DIM, 3 * DIM), R, 2 * R)
        self.c_proj = LoraLinearRef(nn.Linear(DIM, DIM), R, 2 * R)
        self.ln2 = LayerNormRef(DIM)
        self.fc = nn.Linear(DIM, 4 * DIM)
        self.proj = nn.Linear(4 * DIM, DIM)

    def forward(self, x, mask):
        B, T, D, H = BATCH, CONTEXT, DIM, HEADS
        hd = D // H
        qkv = self.c_attn(self.ln1(x))
        q, k, v = (qkv.narrow(2, i * D, D).reshape(B, T, H, hd).transpose(1, 2) for i in range(3))
        att = q.matmul(k.transpose(2, 3)).mul(1 / math.sqrt(hd)).add(mask).softmax(-1)
        y = att.matmul(v).transpose(1, 2).reshape(B, T, D)
        h = x.add(self.c_proj(y))
        return h.add(self.proj(F.gelu(self.fc(self.ln2(h)))))


class SmallGptRef(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, DIM)
        self.wpe = nn.Embedding(CONTEXT, DIM)
        self.h = nn.ModuleList(BlockRef() for _ in range(LAYERS))
        self.ln_f = LayerNormRef(DIM)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)
        self.register_buffer("positions", torch.arange(CONTEXT))
        self.register_buffer("mask", torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1))
        # LoRA training: only the adapter factors train, as injectAdapter arranges in torch-lora.
        for name, p in self.named_parameters():
            p.requires_grad_("lora_" in name)

    def forward(self, ids):
        x = self.wte(ids).add(self.wpe(self.positions))
        for block in self.h:
            x = block(x, self.mask)
        return self.lm_head(self.ln_f(x))


def tokens(n, shift):
    return torch.tensor([((i + shift) * 31 + 7) % VOCAB for i in range(n)])


def setup():
    torch.manual_seed(0)
    model = SmallGptRef()
    n = BATCH * CONTEXT
    ids = tokens(n, 0).reshape(BATCH, CONTEXT)
    targets = tokens(n, 1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def train_step():
        loss = F.cross_entropy(model(ids).reshape(n, VOCAB), targets)
        loss.backward()
        opt.step()
        opt.zero_grad()

    def forward():
        with torch.no_grad():
            model(ids)

    return train_step, forward
