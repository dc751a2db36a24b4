// Run inside a fresh project that installed the packed torch-lora: a LoRA round trip through the
// public API, printing JSON for the test to check. Plain JavaScript, as a user would write it.
"use strict";
const fs = require("fs");
const torch = require("torch-lora");
const { nn, lora, init, tensor, manualSeed } = torch;

class Tiny extends nn.Module {
  constructor() {
    super();
    this.emb = new nn.Embedding(10, 4);
    this.fc = new nn.Linear(4, 3);
  }
  forward(ids) {
    return this.fc.forward(this.emb.forward(ids));
  }
}

manualSeed(7);
const model = new Tiny();
const ids = tensor(
  [
    [1, 2, 3],
    [4, 5, 9],
  ],
  { dtype: "int64" },
);
const base = model.forward(ids);
const weights = () => model.namedParameters().map(([n, p]) => [n, p.toBytes().toString("hex")]);

const lm = lora.injectAdapter(model, { r: 2, loraAlpha: 4, targetModules: ["emb", "fc"] });
const stepZeroEqual = lm.forward(ids).equal(base);
for (const [, layer] of lm.loraLayers()) init.normal_(layer.factors("default")[1], 0, 0.5);
lm.eval();
const adapted = lm.forward(ids);

// A second code path for the adapted output: x = W_e[ids] + s(A_eᵀ[ids])B_eᵀ, y = xWᵀ + b + s(xAᵀ)Bᵀ, s = 4/2.
const [Ae, Be] = model.emb.factors("default");
const [Af, Bf] = model.fc.factors("default");
const flat = ids.reshape([-1]);
const x = model.emb.base_layer.weight.indexSelect(0, flat).add(Ae.t().indexSelect(0, flat).matmul(Be.t()).mul(2));
const manual = x.matmul(model.fc.base_layer.weight.t()).add(model.fc.base_layer.bias).add(x.matmul(Af.t()).matmul(Bf.t()).mul(2)).reshape([2, 3, 3]);

const before = weights();
lm.merge();
const merged = lm.forward(ids);
const mergedChangedWeights = JSON.stringify(weights()) !== JSON.stringify(before);
lm.unmerge();
const after = weights();

const maps = fs.readFileSync("/proc/self/maps", "utf8");
const addons = [
  ...new Set(
    maps
      .split("\n")
      .map((l) => l.split(/\s+/).slice(5).join(" "))
      .filter((p) => p.endsWith(".node")),
  ),
];
const maxDiff = (a, b) => a.sub(b).abs().max().item();
console.log(
  JSON.stringify({
    stepZeroEqual,
    adapterChangesOutput: !adapted.equal(base),
    manualMaxDiff: maxDiff(adapted, manual),
    mergedMaxDiff: maxDiff(merged, adapted),
    mergedChangedWeights,
    unmergeExact: JSON.stringify(after) === JSON.stringify(before),
    addons,
  }),
);
