/** The adapter name rule and the "no such adapter" error (lib/lora/adapter-names.ts), directly. */
import { checkAdapterName, noSuchAdapter, requireAdapter } from "../../lib/lora/adapter-names";

describe("adapter names", () => {
  test("a name that is not a string is refused, even one whose text would pass", () => {
    expect(() => checkAdapterName(5)).toThrow(
      new TypeError("adapterName: expected a non-empty name without dots, slashes, backslashes or NUL characters, got 5"),
    );
    expect(() => checkAdapterName(["a"], "name")).toThrow(/^name: expected a non-empty name/);
  });

  test("each forbidden character is refused; others pass", () => {
    for (const bad of ["", "a.b", "a/b", "a\\b", "a\0b"]) expect(() => checkAdapterName(bad)).toThrow(TypeError);
    expect(checkAdapterName("default-2_x")).toBe("default-2_x");
  });

  test("the no-such-adapter error names the argument and lists the adapters, or says none", () => {
    const none = noSuchAdapter("x", []);
    expect(none).toBeInstanceOf(RangeError);
    expect(none.message).toBe('adapterName: no adapter the string "x" (adapters: none)');
    expect(noSuchAdapter("x", ["a", "b"], "names[1]").message).toBe('names[1]: no adapter the string "x" (adapters: a, b)');
    expect(() => requireAdapter("c", ["a", "b"])).toThrow(new RangeError('adapterName: no adapter the string "c" (adapters: a, b)'));
    expect(requireAdapter("b", ["a", "b"])).toBe("b");
  });
});
