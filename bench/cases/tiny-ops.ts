/**
 * Tiny ops: the cost of one call from JS into libtorch and back when the math is negligible.
 * These measure the binding's overhead (argument checks, handle creation, result wrapping);
 * results are left to the garbage collector, as most code does. The goal is parity with
 * PyTorch from Python (÷ PyTorch ≈ 1): a view, a binary op and a three-operand op.
 */
import { handleOf, tensor, where } from "../../lib/tensor";
import { BenchCase } from "../types";
import { benchNative } from "./fixtures";

export const tinyOps: BenchCase[] = [
  {
    name: "x.sum() (4 x f32)",
    group: "Call overhead",
    quick: true,
    js: () => {
      const x = tensor([1, 2, 3, 4]);
      return () => x.sum();
    },
    python: { setup: "x = torch.tensor([1., 2., 3., 4.])", stmt: "x.sum()" },
    floor: () => {
      const x = handleOf(tensor([1, 2, 3, 4]));
      return (n) => benchNative.benchSum(x, n);
    },
  },
  {
    name: "a.add(b) (4 x f32)",
    group: "Call overhead",
    js: () => {
      const a = tensor([1, 2, 3, 4]);
      const b = tensor([5, 6, 7, 8]);
      return () => a.add(b);
    },
    python: { setup: "a = torch.tensor([1., 2., 3., 4.]); b = torch.tensor([5., 6., 7., 8.])", stmt: "a.add(b)" },
  },
  {
    name: "x.unsqueeze(0) (4 x f32)",
    group: "Call overhead",
    js: () => {
      const x = tensor([1, 2, 3, 4]);
      return () => x.unsqueeze(0);
    },
    python: { setup: "x = torch.tensor([1., 2., 3., 4.])", stmt: "x.unsqueeze(0)" },
  },
  {
    name: "where(m, a, b) (4 x f32)",
    group: "Call overhead",
    js: () => {
      const a = tensor([1, 2, 3, 4]);
      const b = tensor([5, 6, 7, 8]);
      const m = a.gt(2);
      return () => where(m, a, b);
    },
    python: {
      setup: "a = torch.tensor([1., 2., 3., 4.]); b = torch.tensor([5., 6., 7., 8.]); m = a > 2",
      stmt: "torch.where(m, a, b)",
    },
  },
];
