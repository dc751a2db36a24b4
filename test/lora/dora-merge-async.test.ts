/**
 * mergeAsync with DoRA adapters: each adapter merges on a worker (loraDoraMergeAsync for DoRA,
 * loraMergeAsync for the plain ones of the same call), in order, with the weights of the
 * synchronous merge bit for bit (a second code path) and a bit-exact unmerge; the layer refuses
 * other work while a merge is in flight and never shows the weight half-merged; a refused safe
 * merge rejects and leaves the weight as it was.
 */
import { Tensor, noGrad, randn, tensor } from "../../lib";
import { countCallsAsync } from "../helpers/native-calls";
import { mixedLayer as mixedDoraLayer } from "./support/mixed-dora";

/** A Linear 6 → 5 with plain adapter "p" and DoRA adapter "d", every factor and magnitude random (the same each call). */
const mixedLayer = () => mixedDoraLayer(6, 5, 7);

const bits = (t: Tensor) => Buffer.from(t.detach().toBytes()).toString("hex");

describe("mergeAsync with DoRA adapters", () => {
  test.each([
    ["d alone", ["d"]],
    ["p then d", ["p", "d"]],
    ["d then p", ["d", "p"]],
  ])("%s: on workers, the synchronous merge's weight bit for bit, and a bit-exact unmerge", async (_name, names) => {
    const sync = mixedLayer();
    sync.merge({ adapterNames: names });
    const layer = mixedLayer();
    const pristine = bits(layer.base_layer.weight);
    const counts = await countCallsAsync(["loraDoraMerge", "loraDoraMergeAsync", "loraMerge", "loraMergeAsync"], () =>
      layer.mergeAsync({ adapterNames: names }),
    );
    expect(counts).toEqual({ loraDoraMerge: 0, loraDoraMergeAsync: 1, loraMerge: 0, loraMergeAsync: names.length - 1 });
    expect(layer.mergedAdapters).toEqual(names);
    expect(bits(layer.base_layer.weight)).toBe(bits(sync.base_layer.weight));
    await layer.unmergeAsync();
    expect(bits(layer.base_layer.weight)).toBe(pristine);
  });

  test("while it is in flight: forward is refused and the weight reads as before the merge", async () => {
    const layer = mixedLayer();
    const pristine = bits(layer.base_layer.weight);
    const pending = layer.mergeAsync({ adapterNames: ["d"] });
    expect(() => layer.forward(randn([2, 6]))).toThrow(/forward: an async merge is in flight on this layer; await it first/);
    expect(bits(layer.base_layer.weight)).toBe(pristine);
    await pending;
    expect(bits(layer.base_layer.weight)).not.toBe(pristine);
    expect(layer.forward(randn([2, 6])).shape).toEqual([2, 5]);
  });

  test("a safe merge whose result is not finite rejects, and the weight stays as it was", async () => {
    const layer = mixedLayer();
    noGrad(() => layer.magnitude("d")!.copy_(tensor([1, Number.NaN, 1, 1, 1])));
    const pristine = bits(layer.base_layer.weight);
    await expect(layer.mergeAsync({ adapterNames: ["p", "d"], safe: true })).rejects.toThrow(
      /merge refused: the merged weight would contain NaN or Inf values/,
    );
    expect(bits(layer.base_layer.weight)).toBe(pristine);
    expect(layer.merged).toBe(false);
    expect(layer.forward(randn([2, 6])).shape).toEqual([2, 5]);
  });
});
