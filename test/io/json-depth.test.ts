/**
 * excessNestingOffset counts depth, not brackets: closing brackets give the depth back, so long
 * lists of shallow siblings (every real header) stay within the bound.
 */
import { excessNestingOffset } from "../../lib/io/json-depth";

describe("the nesting bound counts depth, not brackets", () => {
  test("siblings closed with ] or } do not add up", () => {
    expect(excessNestingOffset("[[],[],[],[]]", 2)).toBe(-1);
    expect(excessNestingOffset('{"a":{},"b":{},"c":{}}', 2)).toBe(-1);
    expect(excessNestingOffset('[{"a":[]},{"b":[]},{"c":[]}]', 3)).toBe(-1);
  });

  test("after siblings close, a deeper one is found at its own offset", () => {
    expect(excessNestingOffset("[[],[],[[]]]", 2)).toBe(8);
    expect(excessNestingOffset('{"a":{},"b":{"c":{}}}', 2)).toBe(17);
  });
});
