"""PyTorch-eager reference for the transformer cases of `npm run bench`: attention written out
as PyTorch 2's F.scaled_dot_product_attention computes it (torch 1.13 has no such function),
and a pre-LN transformer block built from torch.nn modules, as a user would write it."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def causal_mask(t: int, s: int) -> torch.Tensor:
    """True where a query may not attend (above the diagonal)."""
    return torch.ones(t, s, dtype=torch.bool).triu(1)


def attention(q, k, v, mask):
    """softmax(q kᵀ / sqrt(E), masked) v."""
    scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]))
    scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, -1) @ v


class BlockRef(nn.Module):
    """Pre-LN block: x + proj(attn(LN(x))), then + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, dim: int, heads: int, seq: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.register_buffer("mask", causal_mask(seq, seq), persistent=False)

    def forward(self, x):
        b, t, c = x.shape
        h = self.ln1(x)
        split = lambda y: y.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)
        a = attention(split(self.q(h)), split(self.k(h)), split(self.v(h)), self.mask)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, c))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
