/**
 * Merge + unmerge of a 4096×4096 layer at r = 16 (fp32 and bf16). torch-lora keeps a pristine
 * backup so unmerge is bit-exact; PEFT adds and subtracts the recomputed delta (in fp32 on CPU
 * for half types); the floor is `W.addmm_(B, A, alpha=s)` then the same with `-s`, in place.
 */
import { BenchCase } from "../types";
import { benchNative, handles, loraLinear } from "./fixtures";

const DIM = 4096;
const R = 16;

function casesFor(dtype: "float32" | "bfloat16"): BenchCase {
  const pyDtype = dtype === "float32" ? "torch.float32" : "torch.bfloat16";
  return {
    name: `merge+unmerge 4096² ${dtype === "float32" ? "f32" : "bf16"}`,
    group: "Merge",
    quick: dtype === "float32",
    batches: 5,
    batchMs: 40,
    js: () => {
      const layer = loraLinear(DIM, DIM, R, dtype);
      return () => {
        layer.merge();
        layer.unmerge();
      };
    },
    python: {
      setup: [
        "import torch.nn as nn",
        "from peft_reference import LoraLinearRef",
        `layer = LoraLinearRef(nn.Linear(${DIM}, ${DIM}, bias=False), ${R}, ${R}).to(${pyDtype})`,
      ].join("\n"),
      stmt: "layer.merge(); layer.unmerge()",
    },
    floor: () => {
      const h = handles(loraLinear(DIM, DIM, R, dtype));
      return (n) => benchNative.benchMergeFloor(h.w, h.A, h.B, 1, n);
    },
  };
}

export const mergeCases: BenchCase[] = [casesFor("float32"), casesFor("bfloat16")];
