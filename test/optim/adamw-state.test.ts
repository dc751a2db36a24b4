/**
 * AdamW state dicts beyond the AMSGrad resume of adamw.test.ts: without AMSGrad, with a parameter
 * that has not stepped yet (a null entry), each resumed bit for bit against a run that never
 * stopped; and the messages of the AMSGrad state and maximize checks.
 */
import { optim, Tensor, tensor } from "../../lib";
import { itThrowsEach } from "../helpers/errors";
import { param, setGrad, values } from "./helpers";

const make = () => [param(values(6, 21), [2, 3]), param(values(4, 22), [4])];

/** Steps `from`..`to`; parameter 0 has no gradient before step `firstGradOfA`. */
function run(ps: Tensor[], opt: optim.AdamW, from: number, to: number, firstGradOfA: number): void {
  for (let t = from; t < to; t++) {
    ps.forEach((q, k) => (k === 0 && t < firstGradOfA ? (q.grad = null) : setGrad(q, values(q.numel, 60 + 3 * t + k))));
    opt.step();
  }
}

/** 5 steps straight against 2 + 3 resumed through stateDict/loadStateDict: equal bit for bit. */
function resumesExactly(options: optim.AdamWOptions, firstGradOfA: number): optim.AdamWStateDict {
  const straight = make();
  run(straight, new optim.AdamW(straight, options), 0, 5, firstGradOfA);
  const ps = make();
  const first = new optim.AdamW(ps, options);
  run(ps, first, 0, 2, firstGradOfA);
  const saved = first.stateDict();
  const resumed = ps.map((q) => param(q.toList(), q.shape));
  const second = new optim.AdamW(resumed, { lr: 0.5, amsgrad: !options.amsgrad });
  second.loadStateDict(saved);
  run(resumed, second, 2, 5, firstGradOfA);
  resumed.forEach((q, k) => expect(q.toBytes().equals(straight[k].toBytes())).toBe(true));
  return saved;
}

describe("AdamW state dicts", () => {
  test("without AMSGrad, loaded into an AMSGrad optimizer: resumes exactly and turns AMSGrad off", () => {
    const saved = resumesExactly({ lr: 0.05, weightDecay: 0.1 }, 0);
    expect(saved.state[0]).not.toHaveProperty("maxExpAvgSq");
  });

  test("a parameter that has not stepped yet (a null entry) resumes exactly, with and without AMSGrad", () => {
    expect(resumesExactly({ lr: 0.05 }, 3).state[0]).toBeNull();
    expect(resumesExactly({ lr: 0.05, amsgrad: true }, 3).state[0]).toBeNull();
  });

  describe("refusals name the field", () => {
    const ps = make();
    const opt = new optim.AdamW(ps, { lr: 0.1, amsgrad: true });
    run(ps, opt, 0, 1, 0);
    const saved = opt.stateDict();
    itThrowsEach([
      [
        "an AMSGrad maximum of another shape",
        () => opt.loadStateDict({ ...saved, state: [{ ...saved.state[0]!, maxExpAvgSq: tensor([1, 2, 3]) }, saved.state[1]] }),
        /^loadStateDict: state\[0\]\.maxExpAvgSq: has shape \[3\], but parameter 0 has shape \[2, 3\]$/,
        RangeError,
      ],
      [
        "a maximize flag that is not a boolean",
        () => new optim.AdamW(ps, { maximize: 1 as never }),
        /^AdamW: options.maximize: expected a boolean, got 1$/,
        TypeError,
      ],
    ]);
  });
});
