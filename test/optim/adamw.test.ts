import { optim, Tensor } from "../../lib";
import { TORCH_DRIVER, maxAbsDiff, param, runTorch, setGrad, torchAvailable, values } from "./helpers";
import { NO_TORCH, skipTitle } from "../helpers/skip";

/** AdamW written out with plain float64 numbers, one element at a time. */
function adamwByHand(p0: number[], grads: number[][], o: { lr: number; b1: number; b2: number; eps: number; wd: number }): number[] {
  const p = p0.slice();
  const m = p0.map(() => 0);
  const v = p0.map(() => 0);
  grads.forEach((g, s) => {
    const t = s + 1;
    for (let i = 0; i < p.length; i++) {
      p[i] = p[i] * (1 - o.lr * o.wd);
      m[i] = o.b1 * m[i] + (1 - o.b1) * g[i];
      v[i] = o.b2 * v[i] + (1 - o.b2) * g[i] * g[i];
      const mHat = m[i] / (1 - o.b1 ** t);
      const vHat = v[i] / (1 - o.b2 ** t);
      p[i] = p[i] - (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
    }
  });
  return p;
}

describe("AdamW", () => {
  test("three steps match the formula computed by hand in float64", () => {
    const p0 = [1, -2, 0.5, 3];
    const grads = [
      [0.1, -0.4, 2, 0],
      [-0.3, 0.2, 1.5, 0.01],
      [0.05, 0.05, -1, 0.2],
    ];
    const p = param(p0, [2, 2], "float64");
    const opt = new optim.AdamW([p], { lr: 0.01, betas: [0.8, 0.95], eps: 1e-6, weightDecay: 0.1 });
    for (const g of grads) {
      setGrad(p, g);
      opt.step();
    }
    const expected = adamwByHand(p0, grads, { lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 });
    expect(maxAbsDiff(p.toList(), expected)).toBeLessThan(1e-13);
    // and the update is not a no-op: the parameters moved by about lr per step
    expect(maxAbsDiff(p.toList(), p0)).toBeGreaterThan(0.01);
  });

  test("defaults are PyTorch's", () => {
    const opt = new optim.AdamW([param([1], [1])]);
    expect([opt.lr, opt.betas, opt.eps, opt.weightDecay, opt.amsgrad, opt.maximize]).toEqual([1e-3, [0.9, 0.999], 1e-8, 1e-2, false, false]);
  });

  // /usr/bin/python3 (runTorch) computes the reference; without its torch these tests skip, tagged.
  const noTorch = torchAvailable() ? null : NO_TORCH;
  const cases: [string, object, "float32" | "float64"][] = [
    ["defaults", {}, "float32"],
    ["amsgrad, weight decay, other betas", { lr: 0.05, betas: [0.5, 0.9], eps: 1e-4, weightDecay: 0.3, amsgrad: true }, "float32"],
    ["maximize", { lr: 0.02, maximize: true }, "float64"],
  ];
  (noTorch === null ? test : test.skip).each(cases)(skipTitle("5 steps match torch.optim.AdamW (%s)", noTorch), (_name, opts, dtype) => {
    const shapes = [[3, 4], [5], [2, 1, 2]];
    const init = shapes.map((s, k) =>
      values(
        s.reduce((a, b) => a * b, 1),
        11 + k,
      ),
    );
    // parameter 2 has no gradient in steps 1 and 3: its own step count must lag, as in PyTorch
    const grads = [0, 1, 2, 3, 4].map((t) =>
      shapes.map((s, k) =>
        k === 2 && (t === 1 || t === 3)
          ? null
          : values(
              s.reduce((a, b) => a * b, 1),
              100 * t + k,
            ),
      ),
    );
    const ps = shapes.map((s, k) => param(init[k], s, dtype));
    const o = opts as { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number; amsgrad?: boolean; maximize?: boolean };
    const opt = new optim.AdamW(ps, o);
    for (const step of grads) {
      ps.forEach((p, k) => (step[k] === null ? (p.grad = null) : setGrad(p, step[k] as number[])));
      opt.step();
    }
    const kwargs: Record<string, unknown> = {};
    if (o.lr !== undefined) kwargs.lr = o.lr;
    if (o.betas) kwargs.betas = o.betas;
    if (o.eps !== undefined) kwargs.eps = o.eps;
    if (o.weightDecay !== undefined) kwargs.weight_decay = o.weightDecay;
    if (o.amsgrad) kwargs.amsgrad = true;
    if (o.maximize) kwargs.maximize = true;
    const ref = runTorch<number[][]>(TORCH_DRIVER, { dtype, params: init.map((v, k) => [v, shapes[k]]), ctor: "torch.optim.AdamW", kwargs, grads });
    ps.forEach((p, k) => {
      expect(maxAbsDiff(p.toList(), ref[k])).toBeLessThan(1e-6);
      expect(maxAbsDiff(p.toList(), init[k])).toBeGreaterThan(1e-3);
    });
  });

  test("weight decay is decoupled: a zero gradient only decays the parameter by lr*wd", () => {
    const p = param([2, -4, 8], [3], "float64");
    const opt = new optim.AdamW([p], { lr: 0.1, weightDecay: 0.5 });
    setGrad(p, [0, 0, 0]);
    opt.step();
    expect(p.toList()).toEqual([2 * 0.95, -4 * 0.95, 8 * 0.95]);
  });

  test("parameters without a gradient are untouched and get no state", () => {
    const a = param([1, 2, 3], [3]);
    const b = param([4, 5], [2]);
    const before = Buffer.from(b.toBytes());
    const opt = new optim.AdamW([a, b], { lr: 0.1, weightDecay: 0.1 });
    setGrad(a, [1, 1, 1]);
    opt.step();
    opt.step(); // a keeps its gradient and steps again
    expect(b.toBytes().equals(before)).toBe(true);
    const sd = opt.stateDict();
    expect(sd.state[1]).toBeNull();
    expect(sd.state[0]?.step).toBe(2);
  });

  test("float16 and bfloat16: state in the parameter's dtype, one step equals the float32 step rounded", () => {
    for (const dtype of ["float16", "bfloat16"] as const) {
      // start from values exactly representable in the low-precision dtype
      const p0 = param(values(8, 3), [8], dtype).toList();
      const g = param(values(8, 4), [8], dtype).toList();
      const low = param(p0, [8], dtype);
      const wide = param(p0, [8], "float32");
      const options = { lr: 0.01, weightDecay: 0.1 };
      const optLow = new optim.AdamW([low], options);
      const optWide = new optim.AdamW([wide], options);
      setGrad(low, g);
      setGrad(wide, g);
      optLow.step();
      optWide.step();
      expect(optLow.stateDict().state[0]?.expAvg.dtype).toBe(dtype);
      const rounded = wide.detach().to(dtype).toList();
      // float16 on CPU runs the whole update in float32 and rounds once; bfloat16 rounds per op (PyTorch's kernels)
      const tolerance = dtype === "float16" ? 0 : 2 ** -7;
      expect(maxAbsDiff(low.toList(), rounded)).toBeLessThanOrEqual(tolerance);
      expect(maxAbsDiff(low.toList(), p0)).toBeGreaterThan(0.005);
    }
  });

  test("stateDict → loadStateDict into a fresh optimizer continues bit-identically", () => {
    const make = () => [param(values(6, 1), [2, 3]), param(values(4, 2), [4])];
    const run = (ps: Tensor[], opt: optim.AdamW, from: number, to: number) => {
      for (let t = from; t < to; t++) {
        // parameter 1 misses a gradient at step 2, so the per-parameter step counts differ
        ps.forEach((p, k) => (k === 1 && t === 2 ? (p.grad = null) : setGrad(p, values(p.numel, 50 + 10 * t + k))));
        opt.step();
      }
    };
    const options = { lr: 0.03, amsgrad: true, weightDecay: 0.05 };
    const straight = make();
    run(straight, new optim.AdamW(straight, options), 0, 6);

    const ps = make();
    const first = new optim.AdamW(ps, options);
    run(ps, first, 0, 3);
    const saved = first.stateDict();
    const paramsAt3 = ps.map((p) => Buffer.from(p.toBytes()));
    expect(saved.state.map((e) => e?.step)).toEqual([3, 2]);
    run(ps, first, 3, 5); // later steps must not alter the snapshot

    const fresh = make().map((p, k) => {
      p.grad = null;
      return param(Array.from(new Float32Array(paramsAt3[k].buffer, paramsAt3[k].byteOffset, p.numel)), p.shape);
    });
    const second = new optim.AdamW(fresh, { lr: 0.5 });
    second.loadStateDict(saved);
    expect([second.lr, second.amsgrad, second.weightDecay]).toEqual([0.03, true, 0.05]);
    run(fresh, second, 3, 6);
    fresh.forEach((p, k) => expect(p.toBytes().equals(straight[k].toBytes())).toBe(true));
    // a second load from the same dict gives the same continuation again (the dict was copied, not adopted)
    const again = make().map((p, k) => param(Array.from(new Float32Array(paramsAt3[k].buffer, paramsAt3[k].byteOffset, p.numel)), p.shape));
    const third = new optim.AdamW(again);
    third.loadStateDict(saved);
    run(again, third, 3, 6);
    again.forEach((p, k) => expect(p.toBytes().equals(straight[k].toBytes())).toBe(true));
  });
});
