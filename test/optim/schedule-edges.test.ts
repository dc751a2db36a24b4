/**
 * The edges of the learning-rate schedules: a decay of zero length, every argument check of
 * linearWarmupCosine and LRScheduler with its exact message, and a failed loadStateDict that
 * changes nothing.
 */
import { optim } from "../../lib";
import { itThrowsEach } from "../helpers/errors";
import { param } from "./helpers";

const sgd = (lr = 1) => new optim.SGD([param([1], [1])], { lr });

describe("linearWarmupCosine: edges", () => {
  test("totalSteps = warmupSteps: warm-up, then the floor at once (no decay to divide by zero)", () => {
    const f = optim.linearWarmupCosine({ warmupSteps: 4, totalSteps: 4, minLrRatio: 0.25 });
    expect([0, 2, 4, 5, 100].map(f)).toEqual([0, 0.5, 0.25, 0.25, 0.25]);
    const g = optim.linearWarmupCosine({ warmupSteps: 0, totalSteps: 0 });
    expect([0, 1].map(g)).toEqual([0, 0]);
  });

  itThrowsEach([
    [
      "no options at all",
      () => optim.linearWarmupCosine(undefined as never),
      /^options: expected \{ warmupSteps, totalSteps, minLrRatio\? \}, got undefined$/,
      TypeError,
    ],
    ["options that are not an object", () => optim.linearWarmupCosine(5 as never), /^options: expected an options object, got 5$/, TypeError],
    [
      "a snake_case option",
      () => optim.linearWarmupCosine({ warmup_steps: 1 } as never),
      /^options: unknown option "warmup_steps"; known options are warmupSteps, totalSteps, minLrRatio$/,
      TypeError,
    ],
    [
      "a fractional totalSteps",
      () => optim.linearWarmupCosine({ warmupSteps: 1, totalSteps: 2.5 }),
      /^options.totalSteps: expected an integer >= 0, got 2.5$/,
      RangeError,
    ],
    [
      "totalSteps below warmupSteps by one",
      () => optim.linearWarmupCosine({ warmupSteps: 3, totalSteps: 2 }),
      /^options.totalSteps: expected >= warmupSteps \(3\), got 2$/,
      RangeError,
    ],
  ]);
});

describe("LRScheduler: argument checks", () => {
  const f = () => 1;
  itThrowsEach([
    ["no optimizer", () => new optim.LRScheduler(undefined as never, f), /^optimizer: expected an optimizer with a numeric lr, got undefined$/, TypeError],
    ["a null optimizer", () => new optim.LRScheduler(null as never, f), /^optimizer: expected an optimizer with a numeric lr, got null$/, TypeError],
    [
      "an optimizer whose lr is not a number",
      () => new optim.LRScheduler({ lr: "0.1" } as never, f),
      /^optimizer: expected an optimizer with a numeric lr, got/,
      TypeError,
    ],
    [
      "a function with an lr",
      () => new optim.LRScheduler(Object.assign(() => 0, { lr: 1 }) as never, f),
      /^optimizer: expected an optimizer with a numeric lr/,
      TypeError,
    ],
  ]);

  test("a negative multiplier is refused and changes nothing", () => {
    const opt = sgd(2);
    const sched = new optim.LRScheduler(opt, (s) => (s === 0 ? 1 : -0.5));
    expect(() => sched.step()).toThrow(new RangeError("lrLambda(1): expected a finite multiplier >= 0, got -0.5"));
    expect([opt.lr, sched.lastStep, sched.lastLr]).toEqual([2, 0, 2]);
  });

  test("a multiplier of 0 is allowed", () => {
    const opt = sgd(2);
    new optim.LRScheduler(opt, () => 0);
    expect(opt.lr).toBe(0);
  });
});

describe("LRScheduler.loadStateDict: checks, and nothing changed on failure", () => {
  const make = () => {
    const opt = sgd(1);
    const sched = new optim.LRScheduler(opt, (s) => (s > 5 ? NaN : 1 / (1 + s)));
    sched.step();
    return { opt, sched };
  };
  const cases: [string, unknown, Error][] = [
    ["a snake_case key", { last_step: 1, baseLr: 1 }, new TypeError('state: unknown option "last_step"; known options are lastStep, baseLr')],
    ["a negative lastStep", { lastStep: -1, baseLr: 1 }, new RangeError("state.lastStep: expected an integer >= 0, got -1")],
    ["a negative baseLr", { lastStep: 1, baseLr: -0.1 }, new RangeError("state.baseLr: expected a finite number >= 0, got -0.1")],
    ["a NaN baseLr", { lastStep: 1, baseLr: NaN }, new RangeError("state.baseLr: expected a finite number >= 0, got NaN")],
    ["a string baseLr", { lastStep: 1, baseLr: "1" }, new RangeError('state.baseLr: expected a finite number >= 0, got the string "1"')],
    ["a step whose multiplier is NaN", { lastStep: 7, baseLr: 3 }, new RangeError("lrLambda(7): expected a finite multiplier >= 0, got NaN")],
  ];
  for (const [name, state, error] of cases) {
    test(name, () => {
      const { opt, sched } = make();
      const thrown = captured(() => sched.loadStateDict(state as never));
      expect(thrown).toBeInstanceOf(error.constructor);
      expect(thrown).toHaveProperty("message", error.message);
      expect([sched.baseLr, sched.lastStep, sched.lastLr, opt.lr]).toEqual([1, 1, 0.5, 0.5]);
    });
  }

  test("a baseLr of 0 is accepted", () => {
    const { opt, sched } = make();
    sched.loadStateDict({ lastStep: 3, baseLr: 0 });
    expect([sched.baseLr, sched.lastStep, opt.lr]).toEqual([0, 3, 0]);
  });
});

/** What `fn` threw. */
function captured(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}
