/**
 * What the optimizer base class checks (lib/optim/optimizer.ts): loadStateDict on dicts that are
 * not dicts, state lists with bad entries, saved tensors of another shape of the same rank or of an
 * integer dtype; `params` handing out a copy; zeroGrad's flag. Each refusal names the field and
 * leaves the optimizer as it was.
 */
import { optim, tensor } from "../../lib";
import { itThrowsEach } from "../helpers/errors";
import { param, setGrad } from "./helpers";

/** An AdamW over one 2×3 parameter that took one step, and its state dict. */
function stepped() {
  const p = param([1, 2, 3, 4, 5, 6], [2, 3]);
  const opt = new optim.AdamW([p], { lr: 0.1 });
  setGrad(p, [1, -1, 2, -2, 3, -3]);
  opt.step();
  return { p, opt, saved: opt.stateDict() };
}

describe("loadStateDict: dicts that are not optimizer state dicts", () => {
  const { opt, saved } = stepped();
  const entry = saved.state[0]!;
  itThrowsEach([
    ["null", () => opt.loadStateDict(null as never), /^loadStateDict: expected the state dict of an AdamW \(type "AdamW"\), got null$/, TypeError],
    ["a number", () => opt.loadStateDict(5 as never), /^loadStateDict: expected the state dict of an AdamW \(type "AdamW"\), got 5$/, TypeError],
    [
      "a state that is not a list",
      () => opt.loadStateDict({ ...saved, state: { 0: entry } as never }),
      /^loadStateDict: state: expected an array with one entry per parameter, got an object/,
      TypeError,
    ],
    [
      "a state entry that is a number",
      () => opt.loadStateDict({ ...saved, state: [5 as never] }),
      /^loadStateDict: state\[0\]: expected an object or null, got 5$/,
      TypeError,
    ],
    [
      "a state entry that is an array",
      () => opt.loadStateDict({ ...saved, state: [[entry] as never] }),
      /^loadStateDict: state\[0\]: expected an object or null, got an array of length 1$/,
      TypeError,
    ],
    [
      "a saved tensor of the same rank but another shape",
      () => opt.loadStateDict({ ...saved, state: [{ ...entry, expAvg: tensor([1, 2, 3, 4, 5, 6, 7, 8], { shape: [2, 4] }) }] }),
      /^loadStateDict: state\[0\]\.expAvg: has shape \[2, 4\], but parameter 0 has shape \[2, 3\]$/,
      RangeError,
    ],
    [
      "a saved tensor of a lower rank whose dimensions agree as far as they go",
      () => opt.loadStateDict({ ...saved, state: [{ ...entry, expAvg: tensor([1, 2], { shape: [2] }) }] }),
      /^loadStateDict: state\[0\]\.expAvg: has shape \[2\], but parameter 0 has shape \[2, 3\]$/,
      RangeError,
    ],
    [
      "a saved tensor with the dimensions swapped",
      () => opt.loadStateDict({ ...saved, state: [{ ...entry, expAvgSq: tensor([1, 2, 3, 4, 5, 6], { shape: [3, 2] }) }] }),
      /^loadStateDict: state\[0\]\.expAvgSq: has shape \[3, 2\], but parameter 0 has shape \[2, 3\]$/,
      RangeError,
    ],
    [
      "a saved tensor of an integer dtype",
      () => opt.loadStateDict({ ...saved, state: [{ ...entry, expAvg: tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3], dtype: "int64" }) }] }),
      /^loadStateDict: state\[0\]\.expAvg: expected a floating-point tensor, got dtype int64$/,
      TypeError,
    ],
  ]);

  test("SGD refuses a bad state entry the same way, and nothing changes", () => {
    const p = param([1, 2], [2]);
    const sgd = new optim.SGD([p], { lr: 0.5, momentum: 0.9 });
    const before = sgd.stateDict();
    expect(() => sgd.loadStateDict({ ...before, options: { ...before.options, lr: 0.1 }, state: ["x" as never] })).toThrow(
      new TypeError('loadStateDict: state[0]: expected an object or null, got the string "x"'),
    );
    expect(sgd.lr).toBe(0.5);
    expect(sgd.stateDict().state).toEqual([null]);
  });

  test("a failed load leaves the moments and steps as they were", () => {
    const { p, opt, saved } = stepped();
    const bad = {
      ...saved,
      options: { ...saved.options, lr: 0.7 },
      state: [{ ...saved.state[0]!, expAvg: tensor([0, 0, 0, 0, 0, 0, 0, 0], { shape: [2, 4] }) }],
    };
    expect(() => opt.loadStateDict(bad)).toThrow(RangeError);
    const after = opt.stateDict();
    expect(after.options.lr).toBe(0.1);
    expect(after.state[0]!.step).toBe(1);
    expect(after.state[0]!.expAvg.toArray()).toEqual(saved.state[0]!.expAvg.toArray());
    expect(p.shape).toEqual([2, 3]);
  });
});

describe("the optimizer's own surface", () => {
  test("params is a fresh copy of the list each time", () => {
    const a = param([1], [1]);
    const b = param([2], [1]);
    const opt = new optim.SGD([a, b], { lr: 1 });
    const list = opt.params;
    expect(list).not.toBe(opt.params);
    list.pop();
    list.push(a);
    expect(opt.params).toEqual([a, b]);
  });

  test("zeroGrad refuses a flag that is not a boolean, and leaves the gradients", () => {
    const p = param([1, 2], [2]);
    const opt = new optim.SGD([p], { lr: 1 });
    setGrad(p, [3, 4]);
    expect(() => opt.zeroGrad("yes" as never)).toThrow(new TypeError('setToNone: expected a boolean, got the string "yes"'));
    expect(Array.from(p.grad!.toArray() as ArrayLike<number>)).toEqual([3, 4]);
  });
});
