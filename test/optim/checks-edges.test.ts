/**
 * The optimizers' shared argument checks (lib/optim/checks.ts) on the inputs the other tests do
 * not give: values of the wrong type that JavaScript would coerce, NaN where only finiteness is
 * checked, and parameter lists that are not lists at all. Each message is checked exactly.
 */
import { optim } from "../../lib";
import { itThrowsEach } from "../helpers/errors";
import { param } from "./helpers";

const p = param([1, 2], [2]);

describe("optimizer options of the wrong type", () => {
  itThrowsEach([
    // "0.5" >= 0 and "0.5" < 1 hold after coercion: only the type check refuses it.
    [
      "a beta given as a string",
      () => new optim.AdamW([p], { betas: ["0.5", 0.9] as never }),
      /^AdamW: options.betas\[0\]: expected a number in \[0, 1\), got the string "0.5"$/,
      RangeError,
    ],
    [
      "SGD dampening NaN",
      () => new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: NaN }),
      /^SGD: options.dampening: expected a finite number, got NaN$/,
      RangeError,
    ],
    [
      "SGD dampening Infinity",
      () => new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: -Infinity }),
      /^SGD: options.dampening: expected a finite number, got -Infinity$/,
      RangeError,
    ],
    [
      "SGD dampening as a string",
      () => new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: "0" as never }),
      /^SGD: options.dampening: expected a finite number, got the string "0"$/,
      RangeError,
    ],
    ["options that are a number", () => new optim.AdamW([p], 5 as never), /^AdamW: options: expected an options object, got 5$/, TypeError],
    ["options that are an array", () => new optim.AdamW([p], [] as never), /^AdamW: options: expected an options object, got an (empty )?array/, TypeError],
  ]);

  test("a negative dampening is allowed (PyTorch only asks for a number)", () => {
    expect(new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: -0.5 }).dampening).toBe(-0.5);
  });
});

describe("parameter lists that are not lists", () => {
  itThrowsEach([
    ["a number", () => new optim.SGD(5 as never, { lr: 1 }), /^SGD: params: expected an array or iterable of Tensors, got 5$/, TypeError],
    ["undefined", () => new optim.AdamW(undefined as never), /^AdamW: params: expected an array or iterable of Tensors, got undefined$/, TypeError],
    ["null", () => new optim.AdamW(null as never), /^AdamW: params: expected an array or iterable of Tensors, got null$/, TypeError],
    ["a plain object", () => new optim.AdamW({} as never), /^AdamW: params: expected an array or iterable of Tensors, got an object/, TypeError],
  ]);
});

describe("a missing options object where one is optional", () => {
  test("LRScheduler.loadStateDict(undefined) names the missing field", () => {
    const sched = new optim.LRScheduler(new optim.SGD([p], { lr: 1 }), () => 1);
    expect(() => sched.loadStateDict(undefined as never)).toThrow(new RangeError("state.lastStep: expected an integer >= 0, got undefined"));
  });
});
