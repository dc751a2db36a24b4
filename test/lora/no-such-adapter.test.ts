/** The one "no such adapter" error: the argument, the name, where it was looked for, and the names held. */
import { noSuchAdapter, requireAdapter } from "../../lib/lora/adapter-names";

test("names the argument and the adapter, lists the adapters held, says where when told", () => {
  const err = noSuchAdapter("zz", ["a", "b"], "adapterNames");
  expect(err).toBeInstanceOf(RangeError);
  expect(err.message).toBe('adapterNames: no adapter the string "zz" (adapters: a, b)');
  expect(noSuchAdapter("zz", [], "names", "/srv/adapters").message).toBe('names: no adapter the string "zz" in /srv/adapters (adapters: none)');
  expect(() => requireAdapter("zz", ["a"])).toThrow('adapterName: no adapter the string "zz" (adapters: a)');
});

test("lists at most 20 names, then counts them", () => {
  const held = Array.from({ length: 25 }, (_, i) => `n${i}`);
  const message = noSuchAdapter("zz", held).message;
  expect(message).toBe(`adapterName: no adapter the string "zz" (adapters: ${held.slice(0, 20).join(", ")}, ... (25 in all))`);
});
