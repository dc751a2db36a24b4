/**
 * Transformer building blocks against PyTorch eager: LayerNorm, causal attention at
 * B=8, H=4, T=128, d=64 (forward, and forward + backward), and one training step of a pre-LN
 * transformer block (LayerNorm → q/k/v Linear → causal attention → out projection → residual
 * → LayerNorm → MLP with GELU → residual; loss = mean; AdamW step).
 * Each case disposes its results once used, as Python's refcount frees them at once: a fresh
 * megabyte per call left to the garbage collector measures page faults, not the op.
 */
import { layerNorm } from "../../lib/norm";
import { scaledDotProductAttention } from "../../lib/attention";
import { Linear } from "../../lib/nn/layers";
import { GELU } from "../../lib/nn/activation";
import { LayerNorm } from "../../lib/nn/norm";
import { Module } from "../../lib/nn/module";
import { AdamW } from "../../lib/optim/adamw";
import { Tensor, manualSeed, ones, randn, zeros } from "../../lib/tensor";
import { BenchCase } from "../types";

const [B, H, T, D] = [8, 4, 128, 64];
const C = H * D;

const PY_ATTENTION = [
  "from transformer_reference import attention, causal_mask",
  "torch.manual_seed(0)",
  `q, k, v = (torch.randn(${B}, ${H}, ${T}, ${D}) for _ in range(3))`,
  `mask = causal_mask(${T}, ${T})`,
];

class Block extends Module {
  ln1 = new LayerNorm(C);
  q = new Linear(C, C);
  k = new Linear(C, C);
  v = new Linear(C, C);
  proj = new Linear(C, C);
  ln2 = new LayerNorm(C);
  fc1 = new Linear(C, 4 * C);
  act = new GELU();
  fc2 = new Linear(4 * C, C);

  override forward(x: Tensor): Tensor {
    // Intermediates are disposed once used, as the char-MLP step does: autograd keeps what it
    // needs, and the rest is freed now rather than at the next garbage collection.
    const temps: Tensor[] = [];
    const t = (y: Tensor): Tensor => (temps.push(y), y);
    const h = t(this.ln1.forward(x));
    const split = (y: Tensor) => t(t(y).reshape([B, T, H, D]).transpose(1, 2));
    const a = t(scaledDotProductAttention(split(this.q.forward(h)), split(this.k.forward(h)), split(this.v.forward(h)), { causal: true }));
    const x1 = t(x.add(t(this.proj.forward(t(t(a.transpose(1, 2)).reshape([B, T, C]))))));
    const out = x1.add(t(this.fc2.forward(t(this.act.forward(t(this.fc1.forward(t(this.ln2.forward(x1)))))))));
    for (const y of temps) y.dispose();
    return out;
  }
}

export const transformerCases: BenchCase[] = [
  {
    name: "layerNorm (8x128x256 f32)",
    group: "Transformer",
    quick: true,
    js: () => {
      const x = randn([B, T, C]);
      const [w, b] = [ones([C]), zeros([C])];
      return () => layerNorm(x, C, { weight: w, bias: b }).dispose();
    },
    python: {
      setup: `import torch.nn.functional as F\nx = torch.randn(${B}, ${T}, ${C}); w = torch.ones(${C}); b = torch.zeros(${C})`,
      stmt: `F.layer_norm(x, (${C},), w, b)`,
    },
  },
  {
    name: "layerNorm fwd+bwd (8x128x256 f32)",
    group: "Transformer",
    js: () => {
      const x = randn([B, T, C], { requiresGrad: true });
      const [w, b] = [ones([C], { requiresGrad: true }), zeros([C], { requiresGrad: true })];
      const g = randn([B, T, C]);
      return () => {
        const y = layerNorm(x, C, { weight: w, bias: b });
        y.backward(g);
        y.dispose();
      };
    },
    python: {
      setup: `import torch.nn.functional as F\nx = torch.randn(${B}, ${T}, ${C}, requires_grad=True); w = torch.ones(${C}, requires_grad=True); b = torch.zeros(${C}, requires_grad=True); g = torch.randn(${B}, ${T}, ${C})`,
      stmt: `F.layer_norm(x, (${C},), w, b).backward(g)`,
    },
  },
  {
    name: "attention causal B8 H4 T128 d64 fwd",
    group: "Transformer",
    quick: true,
    js: () => {
      manualSeed(0);
      const [q, k, v] = [randn([B, H, T, D]), randn([B, H, T, D]), randn([B, H, T, D])];
      return () => scaledDotProductAttention(q, k, v, { causal: true }).dispose();
    },
    python: { setup: PY_ATTENTION.join("\n"), stmt: "attention(q, k, v, mask)" },
  },
  {
    name: "attention causal B8 H4 T128 d64 fwd+bwd",
    group: "Transformer",
    js: () => {
      manualSeed(0);
      const [q, k, v] = [0, 1, 2].map(() => randn([B, H, T, D], { requiresGrad: true }));
      const g = randn([B, H, T, D]);
      return () => {
        const y = scaledDotProductAttention(q, k, v, { causal: true });
        y.backward(g);
        y.dispose();
      };
    },
    python: {
      setup: [...PY_ATTENTION, "for t in (q, k, v): t.requires_grad_()", `g = torch.randn(${B}, ${H}, ${T}, ${D})`].join("\n"),
      stmt: "attention(q, k, v, mask).backward(g)",
    },
  },
  {
    name: "train step pre-LN block B8 T128 C256",
    group: "Transformer",
    quick: true,
    batches: 5,
    itemsPerCall: B * T,
    js: () => {
      manualSeed(0);
      const block = new Block();
      const opt = new AdamW(block.parameters(), { lr: 1e-3 });
      const x = randn([B, T, C]);
      return () => {
        const y = block.forward(x);
        const loss = y.mean();
        loss.backward();
        opt.step();
        opt.zeroGrad();
        y.dispose();
        loss.dispose();
      };
    },
    python: {
      setup: [
        "from transformer_reference import BlockRef",
        "torch.manual_seed(0)",
        `block = BlockRef(${C}, ${H}, ${T})`,
        "opt = torch.optim.AdamW(block.parameters(), lr=1e-3)",
        `x = torch.randn(${B}, ${T}, ${C})`,
        "def step():",
        "    loss = block(x).mean()",
        "    loss.backward()",
        "    opt.step()",
        "    opt.zero_grad()",
      ].join("\n"),
      stmt: "step()",
    },
  },
];
