import { optim, Tensor, tensor, zeros } from "../../lib";
import { optimNative } from "../../lib/optim/native";
import { handleOf } from "../../lib/tensor";
import { param, setGrad } from "./helpers";

/** Bytes of every parameter, so a test can prove that a failed call changed nothing. */
function bytes(ps: Tensor[]): Buffer[] {
  return ps.map((p) => Buffer.from(p.toBytes()));
}
function unchanged(ps: Tensor[], before: Buffer[]): boolean {
  return ps.every((p, k) => p.toBytes().equals(before[k]));
}

describe("optimizer argument checks", () => {
  test("constructor options: clear errors naming the option", () => {
    const p = param([1, 2], [2]);
    const cases: [() => unknown, string | RegExp][] = [
      [() => new optim.AdamW([p], { lr: -1 }), "AdamW: options.lr: expected a finite number >= 0, got -1"],
      [() => new optim.AdamW([p], { lr: NaN }), "AdamW: options.lr: expected a finite number >= 0, got NaN"],
      [() => new optim.AdamW([p], { betas: [0.9, 1] }), "AdamW: options.betas[1]: expected a number in [0, 1), got 1"],
      [() => new optim.AdamW([p], { betas: [-0.1, 0.9] }), "AdamW: options.betas[0]: expected a number in [0, 1), got -0.1"],
      [() => new optim.AdamW([p], { betas: [0.9] as never }), "AdamW: options.betas: expected an array of two numbers, got an array of length 1"],
      [() => new optim.AdamW([p], { eps: -1e-8 }), "AdamW: options.eps: expected a finite number >= 0, got -1e-8"],
      [() => new optim.AdamW([p], { weightDecay: Infinity }), /options.weightDecay: expected a finite number >= 0, got Infinity/],
      [() => new optim.AdamW([p], { weight_decay: 0 } as never), /unknown option "weight_decay"; known options are lr, betas/],
      [() => new optim.AdamW([p], { amsgrad: 1 } as never), "AdamW: options.amsgrad: expected a boolean, got 1"],
      [() => new optim.SGD([p], {} as never), "SGD: options.lr: the learning rate is required for SGD (there is no default)"],
      [() => new optim.SGD([p], { lr: 0.1, momentum: -0.5 }), "SGD: options.momentum: expected a finite number >= 0, got -0.5"],
      [() => new optim.SGD([p], { lr: 0.1, nesterov: true }), /Nesterov momentum needs momentum > 0 and dampening = 0, got momentum 0/],
      [() => new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true }), /dampening 0.1/],
    ];
    for (const [fn, message] of cases) expect(fn).toThrow(message);
  });

  test("parameter lists: empty, not tensors, integer, non-leaf, duplicated", () => {
    const p = param([1, 2], [2]);
    expect(() => new optim.AdamW([])).toThrow("AdamW: params: the optimizer got an empty parameter list");
    expect(() => new optim.AdamW(p as never)).toThrow("AdamW: params: expected an array or iterable of Tensors, got a Tensor");
    expect(() => new optim.AdamW([p, "w" as never])).toThrow('AdamW: params[1]: expected a Tensor, got the string "w"');
    expect(() => new optim.SGD([tensor([1, 2], { dtype: "int64" })], { lr: 1 })).toThrow("SGD: params[0]: expected a floating-point tensor, got dtype int64");
    expect(() => new optim.SGD([p.mul(2)], { lr: 1 })).toThrow("SGD: params[0]: cannot optimize a non-leaf tensor");
    expect(() => new optim.SGD([p, p], { lr: 1 })).toThrow("SGD: params[1]: the same tensor appears more than once");
    // an iterable works as well as an array
    expect(new optim.SGD(new Set([p]), { lr: 1 }).params).toEqual([p]);
  });

  test("lr setter rejects bad values and keeps the old one", () => {
    const opt = new optim.AdamW([param([1], [1])], { lr: 0.5 });
    expect(() => (opt.lr = -0.1)).toThrow("lr: expected a finite number >= 0, got -0.1");
    expect(() => (opt.lr = NaN)).toThrow("lr: expected a finite number >= 0, got NaN");
    expect(opt.lr).toBe(0.5);
    opt.lr = 0.25;
    expect(opt.lr).toBe(0.25);
  });

  test("native adamwStep validates everything before touching parameters or state", () => {
    const ps = [param([1, 2, 3], [3]), param([4, 5], [2])];
    ps.forEach((p) => setGrad(p, [1, -1, 1].slice(0, p.numel)));
    const h = ps.map((p) => handleOf(p));
    const m = optimNative.optimZerosLike(h);
    const v = optimNative.optimZerosLike(h);
    const steps = new Float64Array(2);
    const mBefore = m.map((t) => Buffer.from(new Tensor(t).toBytes()));
    const before = bytes(ps);
    const call = (over: Partial<Record<number, unknown>>) => () => {
      const args: unknown[] = [h, m, v, [], steps, 0.1, 0.9, 0.999, 1e-8, 0.01, false, false];
      for (const [k, val] of Object.entries(over)) args[Number(k)] = val;
      return (optimNative.adamwStep as (...a: unknown[]) => number)(...args);
    };
    const cases: [Partial<Record<number, unknown>>, string | RegExp][] = [
      [{ 1: [m[0]] }, "expAvg: expected 2 tensors (one per parameter), got 1"],
      [{ 2: [v[1], v[0]] }, "expAvgSq[0]: has shape [2], float32, cpu, but its parameter has shape [3], float32, cpu"],
      [{ 2: [h[0], v[1]] }, "expAvgSq[0]: is the parameter itself"],
      [{ 3: [m[0], m[1]] }, "maxExpAvgSq: expected an empty array when amsgrad is false, got an array"],
      [{ 4: new Float64Array(3) }, "steps: expected 2 entries (one per parameter), got 3"],
      [{ 4: Float64Array.of(0, -1) }, "steps[1]: expected a non-negative integer, got -1"],
      [{ 4: [0, 0] }, "steps: expected a Float64Array, got an array"],
      [{ 5: NaN }, "lr: expected a finite number, got NaN"],
      [{ 5: -1 }, "lr: expected a number >= 0, got -1"],
      [{ 6: 1 }, "beta1: expected a number in [0, 1), got 1"],
      [{ 7: NaN }, /beta2: expected a finite number/],
      [{ 8: -1 }, "eps: expected a number >= 0, got -1"],
      [{ 9: Infinity }, "weightDecay: expected a finite number, got Infinity"],
      [{ 10: "no" }, 'amsgrad: expected a boolean, got the string "no"'],
      [{ 0: [h[0], h[0]], 1: [m[0], m[0]], 2: [v[0], v[0]] }, "params[1]: the same tensor appears more than once in the parameter list"],
    ];
    for (const [over, message] of cases) expect(call(over)).toThrow(message);
    expect(unchanged(ps, before)).toBe(true);
    expect(Array.from(steps)).toEqual([0, 0]);
    m.forEach((t, k) => expect(new Tensor(t).toBytes().equals(mBefore[k])).toBe(true));
    // the same call with good arguments does update
    expect(call({})()).toBe(2);
    expect(unchanged(ps, before)).toBe(false);
    expect(Array.from(steps)).toEqual([1, 1]);
  });

  test("native sgdStep validates everything first", () => {
    const ps = [param([1, 2], [2])];
    setGrad(ps[0], [1, 1]);
    const h = ps.map((p) => handleOf(p));
    const before = bytes(ps);
    const bufs = optimNative.optimZerosLike(h);
    const wrongDtype = [handleOf(zeros([2], { dtype: "float64" }))];
    const sgd = optimNative.sgdStep as (...a: unknown[]) => number;
    expect(() => sgd(h, [], new Float64Array(1), 0.1, 0.9, 0, 0, false, false)).toThrow("momentumBuffers: expected 1 tensors (one per parameter), got 0");
    expect(() => sgd(h, wrongDtype, new Float64Array(1), 0.1, 0.9, 0, 0, false, false)).toThrow(
      "momentumBuffers[0]: has shape [2], float64, cpu, but its parameter has shape [2], float32, cpu",
    );
    expect(() => sgd(h, bufs, new Float64Array(1), 0.1, 0, 0, 0, true, false)).toThrow(/nesterov: Nesterov momentum needs momentum > 0/);
    expect(() => sgd(h, bufs, new Float64Array(1), 0.1, 0, 0, 0, false, false)).toThrow(
      "momentumBuffers: expected an empty array when momentum is 0, got an array",
    );
    expect(() => sgd(h, bufs, new Float64Array(1), 0.1, 0.9, NaN, 0, false, false)).toThrow("dampening: expected a finite number, got NaN");
    expect(() => sgd(h, bufs, new Float64Array(1), 0.1, 0.9, 0, -0.1, false, false)).toThrow("weightDecay: expected a number >= 0, got -0.1");
    expect(unchanged(ps, before)).toBe(true);
  });

  test("loadStateDict rejects a mismatching state and changes nothing", () => {
    const a = param([1, 2, 3], [3]);
    const b = param([4, 5], [2]);
    const source = new optim.AdamW([a, b], { lr: 0.1 });
    setGrad(a, [1, 2, 3]);
    setGrad(b, [1, 2]);
    source.step();
    const saved = source.stateDict();

    const c = param([1, 2, 3], [3]);
    const d = param([4, 5], [2]);
    const target = new optim.AdamW([c, d], { lr: 0.7 });
    const wrongShape = { ...saved, state: [saved.state[1], saved.state[0]] };
    const cases: [unknown, string | RegExp][] = [
      [{ ...saved, type: "SGD" }, 'loadStateDict: expected the state dict of an AdamW (type "AdamW"), got the string "SGD"'],
      [{ ...saved, state: [saved.state[0]] }, "loadStateDict: state: has 1 entries, but the optimizer has 2 parameters"],
      [wrongShape, "loadStateDict: state[0].expAvg: has shape [2], but parameter 0 has shape [3]"],
      [{ ...saved, options: { ...saved.options, betas: [1, 1] } }, "loadStateDict: options.betas[0]: expected a number in [0, 1), got 1"],
      [{ ...saved, options: { ...saved.options, amsgrad: true } }, "loadStateDict: state[0].maxExpAvgSq: missing, but amsgrad is on"],
      [{ ...saved, state: [{ ...saved.state[0]!, step: 1.5 }, saved.state[1]] }, "loadStateDict: state[0].step: expected an integer >= 0, got 1.5"],
      [
        { ...saved, state: [{ ...saved.state[0]!, expAvgSq: [1, 2, 3] }, saved.state[1]] },
        "loadStateDict: state[0].expAvgSq: expected a Tensor, got an array of length 3",
      ],
    ];
    for (const [dict, message] of cases) expect(() => target.loadStateDict(dict as optim.AdamWStateDict)).toThrow(message);
    expect(target.lr).toBe(0.7);
    expect(target.stateDict().state).toEqual([null, null]);

    const sgd = new optim.SGD([c, d], { lr: 0.1, momentum: 0.9 });
    expect(() => sgd.loadStateDict(saved as never)).toThrow('expected the state dict of an SGD (type "SGD"), got the string "AdamW"');
    const sgdSaved = new optim.SGD([a, b], { lr: 0.1, momentum: 0.9 });
    sgdSaved.step();
    const dict = sgdSaved.stateDict(); // no gradients were set since: a and b still have theirs
    expect(() => sgd.loadStateDict({ ...dict, state: [{ step: 1, momentumBuffer: null }, null] })).toThrow(
      "loadStateDict: state[0].momentumBuffer: missing, but momentum is 0.9 and the parameter took 1 steps",
    );
  });
});
