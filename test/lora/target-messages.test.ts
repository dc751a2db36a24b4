/**
 * The pieces of the target-selection messages (lib/lora/targets.ts) on models the other tests do
 * not build: the module list cut at 20 names, a model with no adaptable module at all, and the
 * close-name search (edit distance, budget, ties, the limit) directly.
 */
import { ConfigError, nn } from "../../lib";
import { resolveLoraConfig } from "../../lib/lora/config";
import { closeNames, selectTargets } from "../../lib/lora/targets";
import { messageOf } from "../helpers/errors";

/** A Sequential of `n` Linear layers named "0" .. "n-1". */
const stack = (n: number) => new nn.Sequential(...Array.from({ length: n }, () => new nn.Linear(2, 2)));
const config = (targetModules: string[] | string) => resolveLoraConfig({ targetModules });

/** The message of the ConfigError that `fn` throws. */
const message = (fn: () => unknown): string => messageOf(fn, ConfigError);

describe("the model's module list in a message", () => {
  const names = (n: number) => Array.from({ length: n }, (_, i) => String(i)).join(", ");

  test("20 names are listed in full; more are cut at 20 with the total", () => {
    expect(message(() => selectTargets(stack(20), config(["zzzzzzzz"])))).toBe(
      `LoraConfig.targetModules: ["zzzzzzzz"] matches no Linear/Embedding module: "zzzzzzzz" matches no Linear/Embedding module; the model has: ${names(20)}`,
    );
    expect(message(() => selectTargets(stack(21), config(["zzzzzzzz"])))).toMatch(new RegExp(`the model has: ${names(20)}, \\.\\.\\. \\(21 in all\\)$`));
  });

  test("a model without any Linear, Embedding or Conv1D says none", () => {
    expect(message(() => selectTargets(new nn.Sequential(new nn.ReLU()), config(["fc"])))).toBe(
      'LoraConfig.targetModules: ["fc"] matches no Linear/Embedding module: "fc" matches no Linear/Embedding module; the model has: none',
    );
  });

  test("only the entries that match nothing are named when others match", () => {
    expect(message(() => selectTargets(stack(2), config(["0", "zzzzzzzz"])))).toBe(
      'LoraConfig.targetModules: "zzzzzzzz" matches no Linear/Embedding module; the model has: 0, 1',
    );
  });

  test("a string that selects nothing is explained as a whole-name regex", () => {
    expect(message(() => selectTargets(stack(2), config("[2-9]")))).toBe(
      'LoraConfig.targetModules: "[2-9]" matches no Linear/Embedding module (a string is a regular expression that must match a module\'s whole dotted name, such as "0"; ' +
        'to select modules by the end of their name, pass a list: ["0"]); the model has: 0, 1',
    );
  });
});

describe("what an unmatched entry is told", () => {
  class Proj extends nn.Module {
    k_proj = new nn.Linear(2, 2);
    o_proj = new nn.Linear(2, 2);
  }

  class Blocks extends nn.Module {
    blocks = stack(5);
    head = new nn.Linear(2, 2);
  }

  test("a top-level container, named by its full path: at most four layers inside it are listed", () => {
    expect(message(() => selectTargets(new Blocks(), config(["blocks"])))).toBe(
      'LoraConfig.targetModules: ["blocks"] matches no Linear/Embedding module: "blocks" names a Sequential, not a Linear/Embedding/Conv1D layer; ' +
        'list the layers inside it, such as "blocks.0", "blocks.1", "blocks.2", "blocks.3"',
    );
  });

  test("several close names at the same distance are offered with or", () => {
    expect(message(() => selectTargets(new Proj(), config(["x_proj"])))).toBe(
      'LoraConfig.targetModules: ["x_proj"] matches no Linear/Embedding module: "x_proj" matches no Linear/Embedding module; did you mean "k_proj" or "o_proj"?',
    );
  });
});

describe("closeNames", () => {
  const names = ["a.q_proj", "a.k_proj", "b.q_proj", "b.v_proj", "c.o_proj", "c.gate_proj"];

  test("the endings at the smallest distance, sorted, without repeats", () => {
    expect(closeNames("q_prj", names)).toEqual(["q_proj"]);
    expect(closeNames("x_proj", names)).toEqual(["k_proj", "o_proj", "q_proj"]);
    expect(closeNames("x_proj", names, 2)).toEqual(["k_proj", "o_proj"]);
  });

  test("the budget is a third of the entry's length, at least 2", () => {
    // "qproj" → "q_proj" is 1 edit; "pro" → "q_proj" is 3 edits, past the budget of 2.
    expect(closeNames("pro", ["q_proj"])).toEqual([]);
    expect(closeNames("ab", ["xy"])).toEqual(["xy"]);
    expect(closeNames("ab", ["xyz"])).toEqual([]);
    // 9 characters: a budget of 3 edits, not 2.
    expect(closeNames("gateXYZoj", ["gate_proj"])).toEqual(["gate_proj"]);
    expect(closeNames("gaXXXXXoj", ["gate_proj"])).toEqual([]);
  });

  test("lengths that differ by more than the budget are never close; by the budget they may be", () => {
    expect(closeNames("abcdef", ["abcdefghi"])).toEqual([]);
    expect(closeNames("abcdef", ["abcdefgh"])).toEqual(["abcdefgh"]);
    expect(closeNames("abcdefgh", ["abcdef"])).toEqual(["abcdef"]);
  });

  test("endings of as many parts as the entry", () => {
    expect(closeNames("a.q_prj", names)).toEqual(["a.q_proj"]);
  });
});
