/**
 * Mixed-adapter batches (serving): 32 rows through a Linear(1024, 1024) holding 16 adapters of
 * rank 16, the rows spread round-robin over 1, 4 or 16 distinct adapters, under noGrad. Python
 * runs PEFT's `adapter_names=` loop over the distinct adapters (bench/python/peft_mixed.py).
 * Plus the plain single-adapter forward of the same batch, the cost a mixed batch is held to.
 */
import { injectAdapter } from "../../lib/lora/model";
import { Linear } from "../../lib/nn/layers";
import { Sequential } from "../../lib/nn/module";
import * as init from "../../lib/init";
import { Tensor, noGrad, randn } from "../../lib/tensor";
import { LoraModel } from "../../lib/lora/model";
import { BenchCase } from "../types";

const ROWS = 32;
const DIM = 1024;
const R = 16;
const LOADED = 16;

function build(): { lm: LoraModel<Sequential>; x: Tensor } {
  const lm = injectAdapter(new Sequential(new Linear(DIM, DIM)), { r: R, loraAlpha: R, targetModules: ["0"] }, "a0");
  for (let k = 1; k < LOADED; k++) lm.addAdapter(`a${k}`, { r: R, loraAlpha: R, targetModules: ["0"] });
  for (const [, layer] of lm.loraLayers()) for (const name of layer.adapterNames) noGrad(() => init.normal_(layer.factors(name)[1], 0, 0.02));
  lm.eval();
  return { lm, x: randn([ROWS, DIM]) };
}

const rowNames = (distinct: number) => Array.from({ length: ROWS }, (_, i) => `a${i % distinct}`);

function pythonSetup(distinct: number): string {
  return [
    "import torch.nn as nn",
    "from peft_mixed import MixedLoraLinearRef",
    "torch.manual_seed(0)",
    `layer = MixedLoraLinearRef(nn.Linear(${DIM}, ${DIM}), ${LOADED}, ${R}, ${R}).eval()`,
    `x = torch.randn(${ROWS}, ${DIM})`,
    `names = [f"a{i % ${distinct}}" for i in range(${ROWS})]`,
  ].join("\n");
}

const mixedCase = (distinct: number): BenchCase => ({
  name: `mixed ${ROWS}x${DIM} r${R} ${distinct} adapter${distinct > 1 ? "s" : ""}`,
  group: "Mixed-adapter batches",
  quick: distinct !== 4,
  js: () => {
    const { lm, x } = build();
    const names = rowNames(distinct);
    return () => noGrad(() => lm.withAdapterNames(names, () => lm.forward(x) as Tensor)).dispose();
  },
  python: { setup: pythonSetup(distinct), stmt: "with torch.no_grad():\n    layer(x, names)" },
});

export const mixedAdapterCases: BenchCase[] = [
  {
    name: `single-adapter ${ROWS}x${DIM} r${R} fwd noGrad`,
    group: "Mixed-adapter batches",
    quick: true,
    js: () => {
      const { lm, x } = build();
      return () => noGrad(() => lm.forward(x) as Tensor).dispose();
    },
    python: { setup: pythonSetup(1), stmt: "with torch.no_grad():\n    layer(x, names)" },
  },
  mixedCase(1),
  mixedCase(4),
  mixedCase(16),
];
