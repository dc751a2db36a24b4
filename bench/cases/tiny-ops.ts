/**
 * Tiny ops: the cost of one call from JS into libtorch and back when the math is negligible.
 * These measure the binding's overhead (argument checks, handle creation, result wrapping).
 */
import { tensor } from "../../lib";
import { BenchCase } from "../types";

export const tinyOps: BenchCase[] = [
  {
    name: "x.sum() (4 x f32)",
    js: () => {
      const x = tensor([1, 2, 3, 4]);
      return () => x.sum();
    },
    python: { setup: "x = torch.tensor([1., 2., 3., 4.])", stmt: "x.sum()" },
  },
  {
    name: "a.add(b) (4 x f32)",
    js: () => {
      const a = tensor([1, 2, 3, 4]);
      const b = tensor([5, 6, 7, 8]);
      return () => a.add(b);
    },
    python: { setup: "a = torch.tensor([1., 2., 3., 4.]); b = torch.tensor([5., 6., 7., 8.])", stmt: "a.add(b)" },
  },
];
