/**
 * Indices out of range on CUDA: gather, scatterAdd, indexAdd and multinomial name the bad index
 * (or weights) before the kernel runs, because a device-side assert would leave the CUDA context
 * unusable for the rest of the process. The device still works afterwards.
 */
import { tensor, zeros } from "../../lib";
import { GPU, describeCuda } from "../helpers/cuda";

describeCuda("indexing ops refuse out-of-range indices and keep the device usable", () => {
  const x = () =>
    tensor(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      { device: GPU },
    );
  const idx = (values: number[][]) => tensor(values, { dtype: "int64", device: GPU });
  // On a GPU the addon's check words it; in a rehearsal on the CPU, ATen's own check does.
  const cases: [string, () => unknown, RegExp][] = [
    ["gather", () => x().gather(0, idx([[0, 5]])), /^gather: index:? 5 is out of (range for dim 0 of size 3|bounds for dimension 0 with size 3)/],
    ["gather, negative", () => x().gather(1, idx([[-1, 0]])), /^gather: index:? -1 is out of (range for dim 1 of size 2|bounds for dimension 1 with size 2)/],
    [
      "scatterAdd",
      () => x().scatterAdd(0, idx([[3, 0]]), x().slice(0, 0, 1)),
      /^scatterAdd: index:? 3 is out of (range for dim 0 of size 3|bounds for dimension 0 with size 3)/,
    ],
    [
      "indexAdd",
      () => x().indexAdd(0, tensor([7], { dtype: "int64", device: GPU }), x().slice(0, 0, 1)),
      /^indexAdd: (index: 7 is out of range for dim 0 of size 3|.*out of range)/,
    ],
    ["multinomial", () => tensor([0.5, -1], { device: GPU }).multinomial(1), /^multinomial: /],
  ];
  for (const [name, fn, message] of cases) {
    it(name, () => {
      expect(fn).toThrow(message);
      expect(zeros([2], { device: GPU }).add(1).sum().item()).toBe(2);
    });
  }
});
