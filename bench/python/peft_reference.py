"""PyTorch-eager reference for `npm run bench`: LoRA layers written the way PEFT's
`peft.tuners.lora` runs them (nn.Linear factors in ModuleDicts, dropout module, scaling dict,
a loop over active adapters), so that a ratio against torch-lora measures the binding and
the fused kernels, not different math. Same libtorch build as the addon (Debian 1.13)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraLinearRef(nn.Module):
    """PEFT-style LoRA Linear: F.linear(x, W, b) + lora_B(lora_A(dropout(x))) * scaling."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ModuleDict({"default": nn.Linear(base.in_features, r, bias=False)})
        self.lora_B = nn.ModuleDict({"default": nn.Linear(r, base.out_features, bias=False)})
        self.lora_dropout = nn.ModuleDict({"default": nn.Identity()})
        self.scaling = {"default": alpha / r}
        self.active_adapters = ["default"]
        nn.init.zeros_(self.lora_B["default"].weight)
        for p in self.base_layer.parameters():
            p.requires_grad_(False)

    def base_forward(self, x):
        return F.linear(x, self.base_layer.weight, self.base_layer.bias)

    def forward(self, x):
        result = self.base_forward(x)
        for name in self.active_adapters:
            if name not in self.lora_A.keys():
                continue
            lora_A = self.lora_A[name]
            lora_B = self.lora_B[name]
            dropout = self.lora_dropout[name]
            x = x.to(lora_A.weight.dtype)
            result = result + lora_B(lora_A(dropout(x))) * self.scaling[name]
        return result

    def delta_weight(self, name="default"):
        # PEFT computes the delta in fp32 on CPU for half types, then casts once.
        wa, wb = self.lora_A[name].weight, self.lora_B[name].weight
        dtype = wb.dtype
        cast = wb.device.type == "cpu" and dtype in (torch.float16, torch.bfloat16)
        if cast:
            wa, wb = wa.float(), wb.float()
        out = (wb @ wa) * self.scaling[name]
        return out.to(dtype) if cast else out

    def merge(self):
        self.base_layer.weight.data += self.delta_weight()

    def unmerge(self):
        self.base_layer.weight.data -= self.delta_weight()


class LoraEmbeddingRef(nn.Module):
    """PEFT-style LoRA Embedding: F.embedding(x, W) + (F.embedding(x, A.T) @ B.T) * scaling."""

    def __init__(self, base: nn.Embedding, r: int, alpha: float):
        super().__init__()
        self.base_layer = base
        self.lora_embedding_A = nn.ParameterDict({"default": nn.Parameter(torch.randn(r, base.num_embeddings))})
        self.lora_embedding_B = nn.ParameterDict({"default": nn.Parameter(torch.zeros(base.embedding_dim, r))})
        self.scaling = {"default": alpha / r}
        self.active_adapters = ["default"]
        for p in self.base_layer.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        result = F.embedding(x, self.base_layer.weight, self.base_layer.padding_idx)
        for name in self.active_adapters:
            if name not in self.lora_embedding_A:
                continue
            embedding_A = self.lora_embedding_A[name].T
            embedding_B = self.lora_embedding_B[name].T
            after_A = F.embedding(x, embedding_A, self.base_layer.padding_idx)
            result = result + (after_A @ embedding_B) * self.scaling[name]
        return result


class CharModelRef(nn.Module):
    """The bench's char-level model: Embedding(28, 32) on 8 chars -> 256 -> ReLU -> 28, LoRA r=8 on all three."""

    def __init__(self, r=8, alpha=16, vocab=28, dim=32, context=8, hidden=256):
        super().__init__()
        self.context, self.dim = context, dim
        self.emb = LoraEmbeddingRef(nn.Embedding(vocab, dim), r, alpha)
        self.fc1 = LoraLinearRef(nn.Linear(context * dim, hidden), r, alpha)
        self.fc2 = LoraLinearRef(nn.Linear(hidden, vocab), r, alpha)

    def forward(self, ids):
        h = self.emb(ids).reshape(ids.shape[0], self.context * self.dim)
        return self.fc2(F.relu(self.fc1(h)))


class Conv1DRef(nn.Module):
    """transformers' Conv1D: a Linear with its weight stored (in, out), `addmm(b, x, W)`."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.in_features, self.out_features = weight.shape

    def forward(self, x):
        y = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return y.view(*x.shape[:-1], self.out_features)


class LoraConv1DRef(LoraLinearRef):
    """PEFT's LoRA on a Conv1D (fan_in_fan_out): the base layer's own forward, then the same
    lora_B(lora_A(dropout(x))) * scaling; the (in, out) orientation matters only for merging."""

    def base_forward(self, x):
        return self.base_layer(x)

