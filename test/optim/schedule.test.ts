import { optim } from "../../lib";
import { param } from "./helpers";

describe("linearWarmupCosine", () => {
  const f = optim.linearWarmupCosine({ warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 });

  test("linear warm-up from 0 to 1", () => {
    expect(f(0)).toBe(0);
    expect(f(5)).toBe(0.5);
    expect(f(9)).toBeCloseTo(0.9, 15);
    expect(f(10)).toBe(1);
  });

  test("cosine decay to the floor, held after totalSteps", () => {
    // halfway through the decay cos(π/2) = 0: 0.1 + 0.9 · 0.5
    expect(f(60)).toBeCloseTo(0.55, 15);
    // a quarter of the way: 0.1 + 0.9 · (1 + cos(π/4)) / 2
    expect(f(35)).toBeCloseTo(0.1 + (0.9 * (1 + Math.SQRT1_2)) / 2, 15);
    expect(f(110)).toBeCloseTo(0.1, 15);
    expect(f(1000)).toBeCloseTo(0.1, 15);
  });

  test("no warm-up, and a floor of 0 by default", () => {
    const g = optim.linearWarmupCosine({ warmupSteps: 0, totalSteps: 4 });
    expect([0, 1, 2, 3, 4].map((s) => g(s))).toEqual([0, 1, 2, 3, 4].map((s) => 0.5 * (1 + Math.cos((Math.PI * s) / 4))));
  });

  test("bad options are clear errors", () => {
    expect(() => optim.linearWarmupCosine({ warmupSteps: 10, totalSteps: 5 })).toThrow("options.totalSteps: expected >= warmupSteps (10), got 5");
    expect(() => optim.linearWarmupCosine({ warmupSteps: -1, totalSteps: 5 })).toThrow("options.warmupSteps: expected an integer >= 0, got -1");
    expect(() => optim.linearWarmupCosine({ warmupSteps: 1, totalSteps: 5, minLrRatio: 1 })).toThrow("options.minLrRatio: expected a number in [0, 1), got 1");
    expect(() => optim.linearWarmupCosine({ warmup_steps: 1 } as never)).toThrow(/unknown option "warmup_steps"/);
    expect(() => f(-1)).toThrow("step: expected an integer >= 0, got -1");
  });
});

describe("LRScheduler", () => {
  test("sets lr = baseLr · multiplier: step 0 at construction, then one per step()", () => {
    const opt = new optim.AdamW([param([1], [1])], { lr: 0.2 });
    const sched = new optim.LRScheduler(opt, optim.linearWarmupCosine({ warmupSteps: 4, totalSteps: 8 }));
    expect([sched.baseLr, sched.lastStep, opt.lr]).toEqual([0.2, 0, 0]);
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      sched.step();
      seen.push(opt.lr);
    }
    const expected = [1, 2, 3, 4, 5, 6, 7, 8].map((s) => 0.2 * (s < 4 ? s / 4 : 0.5 * (1 + Math.cos((Math.PI * (s - 4)) / 4))));
    seen.forEach((lr, i) => expect(lr).toBeCloseTo(expected[i], 15));
    expect(sched.lastLr).toBe(opt.lr);
  });

  test("stateDict / loadStateDict resume at the same step", () => {
    const f = (s: number) => 1 / (1 + s);
    const opt = new optim.SGD([param([1], [1])], { lr: 1 });
    const sched = new optim.LRScheduler(opt, f);
    sched.step();
    sched.step();
    const saved = sched.stateDict();
    const opt2 = new optim.SGD([param([1], [1])], { lr: 1 });
    const sched2 = new optim.LRScheduler(opt2, f);
    sched2.loadStateDict(saved);
    expect([sched2.lastStep, opt2.lr]).toEqual([2, 1 / 3]);
  });

  test("a bad multiplier throws and leaves the lr unchanged", () => {
    const opt = new optim.SGD([param([1], [1])], { lr: 1 });
    const sched = new optim.LRScheduler(opt, (s) => (s < 2 ? 1 : NaN));
    sched.step();
    expect(() => sched.step()).toThrow("lrLambda(2): expected a finite multiplier >= 0, got NaN");
    expect([opt.lr, sched.lastStep]).toEqual([1, 1]);
    expect(() => new optim.LRScheduler(opt, 3 as never)).toThrow("lrLambda: expected a function, got 3");
  });
});
