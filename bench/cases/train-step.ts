/**
 * One training step of a small char-level model: Embedding(28, 32) over 8 context chars →
 * Linear(256, 256) → ReLU → Linear(256, 28), LoRA r = 8 on all three, batch 256: forward,
 * cross-entropy, backward, AdamW step, zeroGrad. Reported per step and as tokens/s.
 */
import { crossEntropy } from "../../lib/functional";
import { injectAdapter } from "../../lib/lora/model";
import { Embedding, Linear } from "../../lib/nn/layers";
import { Module } from "../../lib/nn/module";
import { AdamW } from "../../lib/optim/adamw";
import { Tensor, manualSeed, tensor } from "../../lib/tensor";
import { BenchCase } from "../types";

const VOCAB = 28;
const DIM = 32;
const CONTEXT = 8;
const HIDDEN = 256;
const BATCH = 256;

class CharModel extends Module {
  emb = new Embedding(VOCAB, DIM);
  fc1 = new Linear(CONTEXT * DIM, HIDDEN);
  fc2 = new Linear(HIDDEN, VOCAB);

  override forward(ids: Tensor): Tensor {
    const e = this.emb.forward(ids);
    const flat = e.reshape([BATCH, CONTEXT * DIM]);
    const h = this.fc1.forward(flat);
    const a = h.relu();
    const logits = this.fc2.forward(a);
    for (const t of [e, flat, h, a]) t.dispose();
    return logits;
  }
}

/** Fixed pseudo-random batch (the same values on both sides). */
const idsData = () => Array.from({ length: BATCH * CONTEXT }, (_, i) => (i * 31 + 7) % VOCAB);
const targetData = () => Array.from({ length: BATCH }, (_, i) => (i * 17 + 3) % VOCAB);

export const trainStepCases: BenchCase[] = [
  {
    name: "train step char-MLP b256",
    group: "Training",
    quick: true,
    itemsPerCall: BATCH,
    js: () => {
      manualSeed(0);
      const lora = injectAdapter(new CharModel(), { r: 8, loraAlpha: 16, targetModules: ["emb", "fc1", "fc2"] });
      const opt = new AdamW(lora.trainableParameters(), { lr: 1e-3 });
      const ids = tensor(idsData(), { dtype: "int64", shape: [BATCH, CONTEXT] });
      const targets = tensor(targetData(), { dtype: "int64" });
      return () => {
        const logits = lora.forward(ids);
        const loss = crossEntropy(logits, targets);
        loss.backward();
        opt.step();
        opt.zeroGrad();
        loss.dispose();
        logits.dispose();
      };
    },
    python: {
      setup: [
        "from peft_reference import CharModelRef",
        "import torch.nn.functional as F",
        "torch.manual_seed(0)",
        "model = CharModelRef()",
        "opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)",
        `ids = torch.tensor([(i * 31 + 7) % ${VOCAB} for i in range(${BATCH * CONTEXT})]).reshape(${BATCH}, ${CONTEXT})`,
        `targets = torch.tensor([(i * 17 + 3) % ${VOCAB} for i in range(${BATCH})])`,
        "def step():",
        "    loss = F.cross_entropy(model(ids), targets)",
        "    loss.backward()",
        "    opt.step()",
        "    opt.zero_grad()",
      ].join("\n"),
      stmt: "step()",
    },
  },
];
