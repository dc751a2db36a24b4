/**
 * LoRA Linear (dim → dim, r = 16, fp32): forward in training mode, forward + backward of a
 * fixed upstream gradient, and forward under noGrad (inference). The input needs no grad; the
 * factors do; the base weight and bias are frozen. Gradients accumulate across calls on all
 * three sides alike. At 1x256 and 8x768, forward + backward also runs with the input requiring
 * grad (a LoRA layer inside a network, where backward must also reach the layers below).
 */
import { native } from "../../lib/binding";
import { handleOf, noGrad, randn } from "../../lib/tensor";
import { BenchCase } from "../types";
import { benchNative, handles, loraLinear } from "./fixtures";

const R = 16;
const SHAPES: [tokens: number, dim: number, quick: boolean][] = [
  [1, 256, true],
  [8, 768, true],
  [512, 1024, true],
  [2048, 2048, false],
];

/** The shapes that also time forward + backward with the input requiring grad. */
const INPUT_GRAD_SHAPES: [tokens: number, dim: number][] = [
  [1, 256],
  [8, 768],
];

function pythonSetup(tokens: number, dim: number, inputGrad = false): string {
  return [
    "import torch.nn as nn",
    "from peft_reference import LoraLinearRef",
    "torch.manual_seed(0)",
    `layer = LoraLinearRef(nn.Linear(${dim}, ${dim}), ${R}, ${R})`,
    `x = torch.randn(${tokens}, ${dim})${inputGrad ? ".requires_grad_()" : ""}`,
    `g = torch.randn(${tokens}, ${dim})`,
  ].join("\n");
}

function casesFor(tokens: number, dim: number, quick: boolean): BenchCase[] {
  const big = tokens * dim >= 2048 * 2048;
  const sizing = big ? { batches: 5, batchMs: 40 } : {};
  const label = `lora linear ${tokens}x${dim}`;
  const build = (inputGrad = false) => {
    const layer = loraLinear(dim, dim, R);
    const x = randn([tokens, dim], { requiresGrad: inputGrad });
    const g = randn([tokens, dim]);
    return { layer, x, g, h: handles(layer), hx: handleOf(x), hg: handleOf(g) };
  };
  return [
    {
      name: `${label} fwd`,
      group: "LoRA Linear",
      quick,
      ...sizing,
      js: () => {
        const { layer, x } = build();
        return () => layer.forward(x).dispose();
      },
      python: { setup: pythonSetup(tokens, dim), stmt: "layer(x)" },
      floor: () => {
        const { h, hx } = build();
        return (n) => benchNative.benchLoraLinear(hx, h.w, h.b, h.A, h.B, 1, "forward", null, n);
      },
    },
    {
      name: `${label} fwd+bwd`,
      group: "LoRA Linear",
      quick,
      ...sizing,
      js: () => {
        const { layer, x, g } = build();
        return () => {
          const y = layer.forward(x);
          y.backward(g);
          y.dispose();
        };
      },
      python: { setup: pythonSetup(tokens, dim), stmt: "layer(x).backward(g)" },
      floor: () => {
        const { h, hx, hg } = build();
        return (n) => benchNative.benchLoraLinear(hx, h.w, h.b, h.A, h.B, 1, "forwardBackward", hg, n);
      },
    },
    ...(INPUT_GRAD_SHAPES.some(([t, d]) => t === tokens && d === dim)
      ? [
          {
            name: `${label} fwd+bwd, input requires grad`,
            group: "LoRA Linear",
            quick,
            js: () => {
              const { layer, x, g } = build(true);
              return () => {
                const y = layer.forward(x);
                y.backward(g);
                y.dispose();
              };
            },
            python: { setup: pythonSetup(tokens, dim, true), stmt: "layer(x).backward(g)" },
            floor: () => {
              const { h, hx, hg } = build(true);
              return (n: number) => benchNative.benchLoraLinear(hx, h.w, h.b, h.A, h.B, 1, "forwardBackward", hg, n);
            },
          },
        ]
      : []),
    {
      name: `${label} fwd noGrad`,
      group: "LoRA Linear",
      quick: quick && tokens === 1,
      ...sizing,
      js: () => {
        const { layer, x } = build();
        return () => noGrad(() => layer.forward(x)).dispose();
      },
      python: { setup: pythonSetup(tokens, dim), stmt: "with torch.no_grad():\n    layer(x)" },
      floor: () => {
        const { h, hx } = build();
        return (n) => {
          const previous = native.setGradEnabled(false);
          try {
            return benchNative.benchLoraLinear(hx, h.w, h.b, h.A, h.B, 1, "forward", null, n);
          } finally {
            native.setGradEnabled(previous);
          }
        };
      },
    },
  ];
}

export const loraLinearCases: BenchCase[] = SHAPES.flatMap(([t, d, q]) => casesFor(t, d, q));
