/** LoRA Embedding (vocab 32000, dim 1024, r = 16): forward and forward + backward at 8 and 512 tokens. */
import { handleOf, randn, tensor } from "../../lib/tensor";
import { BenchCase } from "../types";
import { benchNative, handles, loraEmbedding } from "./fixtures";

const VOCAB = 32000;
const DIM = 1024;
const R = 16;

/** Deterministic token ids spread over the vocabulary (the same on both sides). */
const idsFor = (tokens: number) => Array.from({ length: tokens }, (_, i) => (i * 7919) % VOCAB);

function pythonSetup(tokens: number): string {
  return [
    "import torch.nn as nn",
    "from peft_reference import LoraEmbeddingRef",
    "torch.manual_seed(0)",
    `layer = LoraEmbeddingRef(nn.Embedding(${VOCAB}, ${DIM}), ${R}, ${R})`,
    `ids = torch.tensor([(i * 7919) % ${VOCAB} for i in range(${tokens})])`,
    `g = torch.randn(${tokens}, ${DIM})`,
  ].join("\n");
}

function casesFor(tokens: number): BenchCase[] {
  const build = () => {
    const layer = loraEmbedding(VOCAB, DIM, R);
    const ids = tensor(idsFor(tokens), { dtype: "int64" });
    const g = randn([tokens, DIM]);
    return { layer, ids, g, h: handles(layer), hids: handleOf(ids), hg: handleOf(g) };
  };
  const label = `lora embedding ${tokens} tok`;
  return [
    {
      name: `${label} fwd`,
      group: "LoRA Embedding",
      quick: tokens === 8,
      js: () => {
        const { layer, ids } = build();
        return () => layer.forward(ids).dispose();
      },
      python: { setup: pythonSetup(tokens), stmt: "layer(ids)" },
      floor: () => {
        const { h, hids } = build();
        return (n) => benchNative.benchLoraEmbedding(hids, h.w, h.A, h.B, 1, "forward", null, n);
      },
    },
    {
      name: `${label} fwd+bwd`,
      group: "LoRA Embedding",
      js: () => {
        const { layer, ids, g } = build();
        return () => {
          const y = layer.forward(ids);
          y.backward(g);
          y.dispose();
        };
      },
      python: { setup: pythonSetup(tokens), stmt: "layer(ids).backward(g)" },
      floor: () => {
        const { h, hids, hg } = build();
        return (n) => benchNative.benchLoraEmbedding(hids, h.w, h.A, h.B, 1, "forwardBackward", hg, n);
      },
    },
  ];
}

export const loraEmbeddingCases: BenchCase[] = [8, 512].flatMap(casesFor);
