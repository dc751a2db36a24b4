/**
 * SGD's options and state dict beyond the common path: every option's message, the getters,
 * state dicts without momentum, with parameters that never stepped, and with step counts of 0;
 * each resumed run is compared bit for bit with a run that never stopped.
 */
import { optim, Tensor, tensor } from "../../lib";
import { itThrowsEach } from "../helpers/errors";
import { param, setGrad, values } from "./helpers";

const p = param([1, 2], [2]);

describe("SGD options", () => {
  itThrowsEach([
    ["no options", () => new optim.SGD([p], undefined as never), /^SGD: options.lr: the learning rate is required for SGD \(there is no default\)$/, TypeError],
    ["null options", () => new optim.SGD([p], null as never), /^SGD: options: expected an options object, got null$/, TypeError],
    ["options that are a number", () => new optim.SGD([p], 5 as never), /^SGD: options: expected an options object, got 5$/, TypeError],
    ["a negative lr", () => new optim.SGD([p], { lr: -1 }), /^SGD: options.lr: expected a finite number >= 0, got -1$/, RangeError],
    [
      "a negative weightDecay",
      () => new optim.SGD([p], { lr: 1, weightDecay: -1 }),
      /^SGD: options.weightDecay: expected a finite number >= 0, got -1$/,
      RangeError,
    ],
    [
      "a nesterov flag that is not a boolean",
      () => new optim.SGD([p], { lr: 1, nesterov: 1 as never }),
      /^SGD: options.nesterov: expected a boolean, got 1$/,
      TypeError,
    ],
    [
      "a maximize flag that is not a boolean",
      () => new optim.SGD([p], { lr: 1, maximize: "no" as never }),
      /^SGD: options.maximize: expected a boolean, got the string "no"$/,
      TypeError,
    ],
  ]);

  test("the getters give the resolved options, PyTorch's defaults where none was given", () => {
    const o = new optim.SGD([p], { lr: 0.5, momentum: 0.9, dampening: 0.25, weightDecay: 0.125, maximize: true });
    expect([o.lr, o.momentum, o.dampening, o.weightDecay, o.nesterov, o.maximize]).toEqual([0.5, 0.9, 0.25, 0.125, false, true]);
    const d = new optim.SGD([p], { lr: 0.5 });
    expect([d.momentum, d.dampening, d.weightDecay, d.nesterov, d.maximize]).toEqual([0, 0, 0, false, false]);
  });
});

/** Two parameters; `steps` SGD steps in which only the second has a gradient before step `firstGradOfA`. */
function run(ps: Tensor[], opt: optim.SGD, from: number, to: number, firstGradOfA: number): void {
  for (let t = from; t < to; t++) {
    ps.forEach((q, k) => (k === 0 && t < firstGradOfA ? (q.grad = null) : setGrad(q, values(q.numel, 90 + 3 * t + k))));
    opt.step();
  }
}
const make = () => [param(values(4, 11), [4]), param(values(3, 12), [3])];

/** Runs 5 steps straight and 2 + 3 resumed through stateDict/loadStateDict; the parameters must agree bit for bit. */
function resumesExactly(options: optim.SGDOptions, firstGradOfA: number, edit: (d: optim.SGDStateDict) => optim.SGDStateDict = (d) => d): void {
  const straight = make();
  run(straight, new optim.SGD(straight, options), 0, 5, firstGradOfA);
  const ps = make();
  const first = new optim.SGD(ps, options);
  run(ps, first, 0, 2, firstGradOfA);
  const resumed = ps.map((q) => param(q.toList(), q.shape));
  const second = new optim.SGD(resumed, { lr: 1, momentum: 0.5 });
  second.loadStateDict(edit(first.stateDict()));
  run(resumed, second, 2, 5, firstGradOfA);
  resumed.forEach((q, k) => expect(q.toBytes().equals(straight[k].toBytes())).toBe(true));
}

describe("SGD state dicts", () => {
  test("without momentum: entries hold the step and no buffer, and a run resumes exactly", () => {
    const ps = make();
    const opt = new optim.SGD(ps, { lr: 0.1 });
    run(ps, opt, 0, 1, 0);
    expect(opt.stateDict().state).toEqual([
      { step: 1, momentumBuffer: null },
      { step: 1, momentumBuffer: null },
    ]);
    resumesExactly({ lr: 0.1, weightDecay: 0.01 }, 0);
  });

  test("with momentum and a parameter that has not stepped yet (a null entry), a run resumes exactly", () => {
    resumesExactly({ lr: 0.1, momentum: 0.9, dampening: 0.2 }, 3, (d) => {
      expect(d.state[0]).toBeNull();
      return d;
    });
  });

  test("an entry with step 0 needs no momentum buffer", () => {
    resumesExactly({ lr: 0.1, momentum: 0.9 }, 3, (d) => ({ ...d, state: [{ step: 0, momentumBuffer: null }, d.state[1]] }));
  });

  describe("refusals name the field", () => {
    const ps = make();
    const opt = new optim.SGD(ps, { lr: 0.1, momentum: 0.9 });
    run(ps, opt, 0, 1, 0);
    const saved = opt.stateDict();
    itThrowsEach([
      [
        "a bad lr",
        () => opt.loadStateDict({ ...saved, options: { ...saved.options, lr: -1 } }),
        /^loadStateDict: options.lr: expected a finite number >= 0, got -1$/,
        RangeError,
      ],
      [
        "one entry too few",
        () => opt.loadStateDict({ ...saved, state: [saved.state[0]] }),
        /^loadStateDict: state: has 1 entries, but the optimizer has 2 parameters$/,
        RangeError,
      ],
      [
        "a fractional step",
        () => opt.loadStateDict({ ...saved, state: [{ ...saved.state[0]!, step: 0.5 }, saved.state[1]] }),
        /^loadStateDict: state\[0\]\.step: expected an integer >= 0, got 0.5$/,
        RangeError,
      ],
      [
        "a momentum buffer that is absent",
        () => opt.loadStateDict({ ...saved, state: [{ step: 2 } as never, saved.state[1]] }),
        /^loadStateDict: state\[0\]\.momentumBuffer: missing, but momentum is 0.9 and the parameter took 2 steps$/,
        TypeError,
      ],
      [
        "a momentum buffer of another shape",
        () => opt.loadStateDict({ ...saved, state: [{ step: 1, momentumBuffer: tensor([1, 2]) }, saved.state[1]] }),
        /^loadStateDict: state\[0\]\.momentumBuffer: has shape \[2\], but parameter 0 has shape \[4\]$/,
        RangeError,
      ],
    ]);
  });
});
