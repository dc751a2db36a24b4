import { optim, Tensor } from "../../lib";
import { TORCH_DRIVER, maxAbsDiff, param, runTorch, setGrad, torchAvailable, values } from "./helpers";
import { NO_TORCH, skipTitle } from "../helpers/skip";

/** SGD written out with plain float64 numbers (PyTorch's update rule). */
function sgdByHand(p0: number[], grads: number[][], o: { lr: number; momentum: number; dampening: number; wd: number; nesterov: boolean }): number[] {
  const p = p0.slice();
  const buf: number[] = [];
  grads.forEach((g, t) => {
    for (let i = 0; i < p.length; i++) {
      let d = g[i] + o.wd * p[i];
      if (o.momentum !== 0) {
        buf[i] = t === 0 ? d : o.momentum * buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      p[i] -= o.lr * d;
    }
  });
  return p;
}

describe("SGD", () => {
  const grads = [
    [0.5, -1, 0.25],
    [0.1, 0.3, -0.7],
    [-0.2, 0.4, 0.9],
    [1, 1, -1],
  ];
  const settings = [
    { lr: 0.1, momentum: 0, dampening: 0, wd: 0, nesterov: false },
    { lr: 0.1, momentum: 0.9, dampening: 0.3, wd: 0.01, nesterov: false },
    { lr: 0.05, momentum: 0.8, dampening: 0, wd: 0.2, nesterov: true },
  ];
  test.each(settings)("four steps match the rule computed by hand in float64 (%o)", (o) => {
    const p0 = [1, -2, 3];
    const p = param(p0, [3], "float64");
    const opt = new optim.SGD([p], { lr: o.lr, momentum: o.momentum, dampening: o.dampening, weightDecay: o.wd, nesterov: o.nesterov });
    for (const g of grads) {
      setGrad(p, g);
      opt.step();
    }
    expect(maxAbsDiff(p.toList(), sgdByHand(p0, grads, o))).toBeLessThan(1e-14);
  });

  test("the first momentum step uses the gradient itself, undamped (PyTorch's buffer start)", () => {
    const p = param([1, 1], [2], "float64");
    const opt = new optim.SGD([p], { lr: 1, momentum: 0.9, dampening: 0.5 });
    setGrad(p, [0.25, -0.5]);
    opt.step();
    expect(p.toList()).toEqual([0.75, 1.5]);
    expect(opt.stateDict().state[0]?.momentumBuffer?.toList()).toEqual([0.25, -0.5]);
  });

  // /usr/bin/python3 (runTorch) computes the reference; without its torch these tests skip, tagged.
  const noTorch = torchAvailable() ? null : NO_TORCH;
  const torchCases: [string, Record<string, unknown>][] = [
    ["momentum + dampening + weight decay", { lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0.01 }],
    ["nesterov", { lr: 0.05, momentum: 0.7, nesterov: true, weightDecay: 0.1 }],
    ["maximize", { lr: 0.02, momentum: 0.5, maximize: true }],
  ];
  (noTorch === null ? test : test.skip).each(torchCases)(skipTitle("5 steps match torch.optim.SGD (%s)", noTorch), (_name, o) => {
    const shapes = [[4, 3], [7]];
    const init = shapes.map((s, k) => values(s[0] * (s[1] ?? 1), 21 + k));
    // parameter 1 has no gradient in step 0, so its momentum buffer starts at step 1
    const stepGrads = [0, 1, 2, 3, 4].map((t) => shapes.map((s, k) => (k === 1 && t === 0 ? null : values(s[0] * (s[1] ?? 1), 300 + 7 * t + k))));
    const ps = shapes.map((s, k) => param(init[k], s));
    const opt = new optim.SGD(ps, o as unknown as optim.SGDOptions);
    for (const step of stepGrads) {
      ps.forEach((p, k) => (step[k] === null ? (p.grad = null) : setGrad(p, step[k] as number[])));
      opt.step();
    }
    const kwargs: Record<string, unknown> = { lr: o.lr, momentum: o.momentum };
    if (o.dampening !== undefined) kwargs.dampening = o.dampening;
    if (o.weightDecay !== undefined) kwargs.weight_decay = o.weightDecay;
    if (o.nesterov) kwargs.nesterov = true;
    if (o.maximize) kwargs.maximize = true;
    const ref = runTorch<number[][]>(TORCH_DRIVER, {
      dtype: "float32",
      params: init.map((v, k) => [v, shapes[k]]),
      ctor: "torch.optim.SGD",
      kwargs,
      grads: stepGrads,
    });
    ps.forEach((p, k) => {
      expect(maxAbsDiff(p.toList(), ref[k])).toBeLessThan(1e-6);
      expect(maxAbsDiff(p.toList(), init[k])).toBeGreaterThan(1e-3);
    });
  });

  test("parameters without a gradient are untouched, even with weight decay", () => {
    const a = param([1, 2], [2]);
    const b = param([3, 4], [2]);
    const before = Buffer.from(b.toBytes());
    const opt = new optim.SGD([a, b], { lr: 0.1, momentum: 0.9, weightDecay: 0.5 });
    setGrad(a, [1, 1]);
    opt.step();
    expect(b.toBytes().equals(before)).toBe(true);
    expect(opt.stateDict().state[1]).toBeNull();
  });

  test("stateDict → loadStateDict into a fresh optimizer continues bit-identically", () => {
    const init = [values(5, 7), values(3, 8)];
    const make = () => [param(init[0], [5]), param(init[1], [3])];
    const run = (ps: Tensor[], opt: optim.SGD, from: number, to: number) => {
      for (let t = from; t < to; t++) {
        ps.forEach((p, k) => (k === 0 && t === 0 ? (p.grad = null) : setGrad(p, values(p.numel, 70 + 3 * t + k))));
        opt.step();
      }
    };
    const options = { lr: 0.1, momentum: 0.9, nesterov: true };
    const straight = make();
    run(straight, new optim.SGD(straight, options), 0, 5);
    const ps = make();
    const first = new optim.SGD(ps, options);
    run(ps, first, 0, 2);
    const saved = first.stateDict();
    const resumed = ps.map((p) => param(p.toList(), p.shape));
    const second = new optim.SGD(resumed, { lr: 1 });
    second.loadStateDict(saved);
    expect([second.lr, second.momentum, second.nesterov]).toEqual([0.1, 0.9, true]);
    run(resumed, second, 2, 5);
    resumed.forEach((p, k) => expect(p.toBytes().equals(straight[k].toBytes())).toBe(true));
  });
});
