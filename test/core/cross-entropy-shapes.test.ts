/**
 * crossEntropy's shapes, as PyTorch reads them: (C) with (), (N, C) with (N), (N, C, d…) with
 * (N, d…). Per-token logits (B, T, V) with targets (B, T) are the common mistake: a RangeError
 * naming both shapes and the reshape that fixes it.
 */
import { crossEntropy, randn, tensor } from "../../lib";

const ids = (list: number[] | number[][]) => tensor(list, { dtype: "int64" });

test("(B, T, V) logits with (B, T) targets: a RangeError naming both shapes and the fix", () => {
  const logits = randn([2, 3, 5]);
  const target = ids([
    [1, 2, 3],
    [0, 1, 4],
  ]);
  expect(() => crossEntropy(logits, target)).toThrow(RangeError);
  expect(() => crossEntropy(logits, target)).toThrow(
    /input \[2, 3, 5\] with target \[2, 3\].*class scores must be in dim 1.*\(N, C\) with target \(N\).*\(N, C, d…\).*logits\.reshape\(\[-1, 5\]\), target\.reshape\(\[-1\]\)/,
  );
  // The fix the message gives works, and equals the (N, C, d) form with classes moved to dim 1.
  const flat = crossEntropy(logits.reshape([-1, 5]), target.reshape([-1]));
  const moved = crossEntropy(logits.transpose(1, 2), target);
  expect(flat.allclose(moved, { rtol: 1e-6, atol: 1e-6 })).toBe(true);
});

test("other mismatches name the expected and the given target shape", () => {
  expect(() => crossEntropy(randn([4, 5]), ids([1, 2, 3]))).toThrow(
    "target: expected shape [4] for input of shape [4, 5] ((N, C) takes target (N); (N, C, d…) takes (N, d…)), got [3]",
  );
  expect(() =>
    crossEntropy(
      randn([2, 5, 3, 4]),
      ids([
        [0, 1, 2],
        [3, 4, 0],
      ]),
    ),
  ).toThrow(/target: expected shape \[2, 3, 4\] for input of shape \[2, 5, 3, 4\]/);
  expect(() => crossEntropy(tensor(1), ids([0]))).toThrow(/input: expected logits of shape \(C\), \(N, C\) or \(N, C, d…\), got a 0-d tensor/);
});

test("the accepted shapes: (C) with (), (N, C) with (N), (N, C, d) with (N, d), against log-softmax by hand", () => {
  const logits = randn([2, 4, 3]);
  const target = ids([
    [0, 3, 1],
    [2, 2, 0],
  ]);
  const byHand = logits.logSoftmax(1).toList() as number[]; // flat, row-major [n][c][d]
  const t = target.toList() as number[]; // flat [n][d]
  let sum = 0;
  for (let n = 0; n < 2; n++) for (let d = 0; d < 3; d++) sum -= byHand[n * 12 + Number(t[n * 3 + d]) * 3 + d];
  expect(crossEntropy(logits, target).item()).toBeCloseTo(sum / 6, 5);
  const row = randn([4]);
  expect(crossEntropy(row, tensor(2, { dtype: "int64" })).item()).toBeCloseTo(-(row.logSoftmax(0).toList() as number[])[2], 5);
  expect(crossEntropy(randn([3, 4]), ids([0, 1, 3])).shape).toEqual([]);
});
