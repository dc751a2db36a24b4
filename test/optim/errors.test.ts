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
      [() => new optim.AdamW([p], { betas: [0.9, NaN] }), "AdamW: options.betas[1]: expected a number in [0, 1), got NaN"],
      [() => new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: NaN }), "SGD: options.dampening: expected a finite number, got NaN"],
      [() => new optim.SGD([p], { lr: 0.1, weightDecay: -0.1 }), "SGD: options.weightDecay: expected a finite number >= 0, got -0.1"],
      [() => new optim.SGD([p], { lr: Infinity }), "SGD: options.lr: expected a finite number >= 0, got Infinity"],
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

  // The semantic checks above are lib/optim's alone; the native steps check what memory safety
  // needs (JS types, the lengths of the per-parameter lists, live handles) and what only they see
  // at step time, all before the first write, so a refused call changes nothing.
  test("native adamwStep checks types, lengths and handles before touching parameters or state", () => {
    const ps = [param([1, 2, 3], [3]), param([4, 5], [2])];
    ps.forEach((p) => setGrad(p, [1, -1, 1].slice(0, p.numel)));
    const h = ps.map((p) => handleOf(p));
    const m = optimNative.optimZerosLike(h);
    const v = optimNative.optimZerosLike(h);
    const steps = new Float64Array(2);
    const mBefore = m.map((t) => Buffer.from(new Tensor(t).toBytes()));
    const before = bytes(ps);
    const disposed = zeros([2]);
    disposed.dispose();
    const good = {
      params: h,
      expAvg: m,
      expAvgSq: v,
      maxExpAvgSq: [],
      steps,
      lr: 0.1,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      amsgrad: false,
      maximize: false,
    };
    const call = (over: Record<string, unknown>) => () => optimNative.adamwStep({ ...good, ...over } as never);
    const cases: [Record<string, unknown>, string | RegExp][] = [
      [{ expAvg: [m[0]] }, "expAvg: expected 2 tensors (one per parameter), got 1"],
      [{ expAvgSq: "v" }, 'expAvgSq: expected an array of Tensors, got the string "v"'],
      [{ expAvgSq: [v[0], 3] }, "expAvgSq[1]: expected a Tensor, got 3"],
      [{ expAvgSq: [v[0], handleOf(disposed)] }, "expAvgSq[1]: the Tensor was disposed and can no longer be used"],
      [{ amsgrad: true, maxExpAvgSq: [m[0]] }, "maxExpAvgSq: expected 2 tensors (one per parameter), got 1"],
      [{ steps: new Float64Array(3) }, "steps: expected 2 entries (one per parameter), got 3"],
      [{ steps: [0, 0] }, "steps: expected a Float64Array, got an array"],
      [{ lr: "0.1" }, 'lr: expected a number, got the string "0.1"'],
      [{ beta1: undefined }, "beta1: expected a number, got undefined"],
      [{ amsgrad: "no" }, 'amsgrad: expected a boolean, got the string "no"'],
      [{ lr: 1e300 }, /lr 1e\+300 with weightDecay 0.01 gives the factor .* float32 arithmetic cannot represent \(params\[0\]\); nothing was changed/],
    ];
    for (const [over, message] of cases) expect(call(over)).toThrow(message);
    expect(() => optimNative.adamwStep(h as never)).toThrow("options: expected an options object, got an array");
    expect(unchanged(ps, before)).toBe(true);
    expect(Array.from(steps)).toEqual([0, 0]);
    m.forEach((t, k) => expect(new Tensor(t).toBytes().equals(mBefore[k])).toBe(true));
    // the same call with good arguments does update
    expect(call({})()).toBe(2);
    expect(unchanged(ps, before)).toBe(false);
    expect(Array.from(steps)).toEqual([1, 1]);
  });

  test("native sgdStep and clipGradNorm check types and lengths first", () => {
    const ps = [param([1, 2], [2])];
    setGrad(ps[0], [1, 1]);
    const h = ps.map((p) => handleOf(p));
    const before = bytes(ps);
    const grad = Buffer.from(ps[0].grad!.toBytes());
    const good = {
      params: h,
      momentumBuffers: optimNative.optimZerosLike(h),
      steps: new Float64Array(1),
      lr: 0.1,
      momentum: 0.9,
      dampening: 0,
      weightDecay: 0,
      nesterov: false,
      maximize: false,
    };
    const sgd = (over: Record<string, unknown>) => () => optimNative.sgdStep({ ...good, ...over } as never);
    expect(sgd({ momentumBuffers: [] })).toThrow("momentumBuffers: expected 1 tensors (one per parameter), got 0");
    expect(sgd({ steps: new Float32Array(1) })).toThrow("steps: expected a Float64Array, got a typed array");
    expect(sgd({ dampening: "0" })).toThrow('dampening: expected a number, got the string "0"');
    expect(sgd({ nesterov: 1 })).toThrow("nesterov: expected a boolean, got 1");
    expect(sgd({ params: [h[0], null] })).toThrow("params[1]: expected a Tensor, got null");
    expect(() => optimNative.sgdStep(undefined as never)).toThrow("options: expected an options object, got undefined");
    expect(unchanged(ps, before)).toBe(true);
    expect(Array.from(good.steps)).toEqual([0]);
    const clip = (over: Record<string, unknown>) => () =>
      optimNative.clipGradNorm({ params: h, maxNorm: 0.1, normType: 2, errorIfNonfinite: false, ...over } as never);
    expect(clip({ params: h[0] })).toThrow("params: expected an array of Tensors, got a native handle");
    expect(clip({ maxNorm: "1" })).toThrow('maxNorm: expected a number, got the string "1"');
    expect(clip({ errorIfNonfinite: 0 })).toThrow("errorIfNonfinite: expected a boolean, got 0");
    expect(ps[0].grad!.toBytes().equals(grad)).toBe(true);
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
      [{ ...saved, state: [{ ...saved.state[0]!, step: -1 }, saved.state[1]] }, "loadStateDict: state[0].step: expected an integer >= 0, got -1"],
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
