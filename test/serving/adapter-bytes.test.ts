/**
 * `adapterBytes` (what AdapterRegistry charges an adapter against its budget): the factors of the
 * layers that hold the adapter only, at the size of their dtype, counted by hand from the shapes.
 */
import { lora, manualSeed, nn } from "../../lib";
import type { Dtype } from "../../lib";

class Pair extends nn.Module {
  emb: nn.Embedding;
  fc: nn.Linear;
  constructor(dtype: Dtype = "float32") {
    super();
    this.emb = new nn.Embedding(10, 4, { dtype });
    this.fc = new nn.Linear(4, 6, { dtype });
  }
}

/** r = 2 on Pair: emb A (2, 10) + B (4, 2), fc A (2, 4) + B (6, 2) = 48 elements. */
const ELEMENTS = 2 * 10 + 4 * 2 + 2 * 4 + 6 * 2;
const BOTH = { r: 2, loraAlpha: 4, targetModules: ["emb", "fc"] };

describe("adapterBytes", () => {
  test("counts only the layers that hold the adapter; an adapter no layer holds takes 0 bytes", () => {
    manualSeed(1);
    const lm = lora.injectAdapter(new Pair(), { r: 2, loraAlpha: 4, targetModules: ["emb"] }, "x");
    lm.addAdapter("y", { r: 3, loraAlpha: 6, targetModules: ["fc"] });
    expect(lora.adapterBytes(lm, "x")).toBe((2 * 10 + 4 * 2) * 4); // emb only
    expect(lora.adapterBytes(lm, "y")).toBe((3 * 4 + 6 * 3) * 4); // fc only
    expect(lora.adapterBytes(lm, "z")).toBe(0);
  });

  test.each([
    ["float32", {}, 4],
    ["float64", {}, 8],
    ["float16", { autocastAdapterDtype: false }, 2],
    ["bfloat16", { autocastAdapterDtype: false }, 2],
    // Half bases keep float32 factors by default: 4 bytes each.
    ["float16", {}, 4],
  ] as [Dtype, lora.AdapterOptions, number][])("a %s base (options %j): %d bytes per factor element", (dtype, options, size) => {
    manualSeed(1);
    const lm = lora.injectAdapter(new Pair(dtype), BOTH, "default", options);
    expect(lora.adapterBytes(lm, "default")).toBe(ELEMENTS * size);
  });
});
