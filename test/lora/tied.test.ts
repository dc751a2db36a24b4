/**
 * Tied parameters (GPT-2's output head holds the token embedding's weight tensor): merging an
 * adapter into a tied weight would change the other holder too, so it is refused with both module
 * paths and what to do; untied (or merely storage-sharing) weights merge exactly.
 */
import { StateError, Tensor, init, lora, nn, noGrad, tensor } from "../../lib";

const IDS = [1, 4, 9, 2];
const ids = (): Tensor => tensor(IDS, { dtype: "int64" });

/** Embedding(10, 4) → Linear(4, 4) → head Linear(4, 10) whose weight is the embedding's. */
class TiedLm extends nn.Module {
  emb = new nn.Embedding(10, 4);
  fc = new nn.Linear(4, 4);
  head = new nn.Linear(4, 10, { bias: false });
  constructor(tie: "same" | "storage" | "none" = "same") {
    super();
    if (tie === "same") this.head.weight = this.emb.weight;
    if (tie === "storage") this.head.weight = this.emb.weight.detach();
  }
  override forward(x: Tensor): Tensor {
    return this.head.forward(this.fc.forward(this.emb.forward(x)));
  }
}

function adapted(targets: string[], tie: "same" | "storage" | "none" = "same"): lora.LoraModel<TiedLm> {
  const m = lora.injectAdapter(new TiedLm(tie), { targetModules: targets, r: 2, loraAlpha: 4 });
  for (const [, l] of m.loraLayers()) noGrad(() => init.normal_(l.factors("default")[1], 0, 0.5));
  return m;
}

const bytes = (m: nn.Module): string =>
  m
    .namedParameters()
    .map(([n, p]) => `${n}:${p.toBytes().toString("hex")}`)
    .join("|");
const maxDiff = (a: Tensor, b: Tensor): number => (a.sub(b).abs().max().toArray() as Float32Array)[0];

/** The adapted model's output from the formula: W[ids] + s·Aᵀ[ids]Bᵀ, then fc, then the head with the pristine W. */
function formula(m: lora.LoraModel<TiedLm>, W: Tensor): Tensor {
  const emb = m.loraLayers().find(([p]) => p === "emb")![1];
  const fc = m.model.fc as nn.Linear;
  const [A, B] = emb.factors("default");
  const idx = ids();
  const h = W.indexSelect(0, idx).add(A.detach().t().indexSelect(0, idx).matmul(B.detach().t()).mul(emb.settings("default")!.scale));
  return h.matmul(fc.weight.t()).add(fc.bias!).matmul(W.t());
}

describe("tied weights: a merge that would change the other holder is refused", () => {
  test("merge / mergeAsync / mergeAndUnload of an embedding adapter whose weight is the head's: a StateError naming both paths and the fixes; nothing changes", async () => {
    const m = adapted(["emb"]);
    const before = bytes(m.model);
    const expected = m.forward(ids());
    for (const call of [() => m.merge(), () => m.mergeAndUnload(), () => m.merge({ safe: true })]) {
      expect(call).toThrow(StateError);
      expect(call).toThrow(
        /merge: emb\.base_layer\.weight is tied to head\.weight \(the same tensor\).*Keep this adapter unmerged.*untie the weights first, e\.g\. model\.head\.weight = model\.head\.weight\.detach\(\)\.clone\(\)/,
      );
    }
    await expect(m.mergeAsync()).rejects.toThrow(/emb\.base_layer\.weight is tied to head\.weight/);
    expect(bytes(m.model)).toBe(before);
    expect(m.loraLayers().every(([, l]) => !l.merged)).toBe(true);
    expect(maxDiff(m.forward(ids()), expected)).toBe(0);
  });

  test("an adapter on the tied head itself is refused the same way, naming the embedding", () => {
    const m = adapted(["head"]);
    expect(() => m.merge()).toThrow(/head\.base_layer\.weight is tied to emb\.weight/);
  });

  test("a weight held in three places: the message names both other holders, comma-separated, in full", () => {
    class ThreeWay extends TiedLm {
      head2 = new nn.Linear(4, 10, { bias: false });
      constructor() {
        super();
        this.head2.weight = this.emb.weight;
      }
    }
    const m = lora.injectAdapter(new ThreeWay(), { targetModules: ["emb"], r: 2, loraAlpha: 4 });
    expect(() => m.merge()).toThrow(
      new StateError(
        "merge: emb.base_layer.weight is tied to head.weight, head2.weight (the same tensor); merging the adapter of emb would change head.weight, head2.weight too, " +
          "so the merged model would differ from the adapted one. Keep this adapter unmerged (merge({ adapterNames }) without it), " +
          "or untie the weights first, e.g. model.head.weight = model.head.weight.detach().clone()",
      ),
    );
  });

  test("adapters on untied layers of a tied model still merge, exactly", () => {
    const m = adapted(["emb", "fc"]);
    m.addAdapter("fc-only", { targetModules: ["fc"], r: 1 });
    noGrad(() =>
      init.normal_(
        m
          .loraLayers()
          .find(([p]) => p === "fc")![1]
          .factors("fc-only")[1],
      ),
    );
    m.setAdapter("fc-only");
    const before = bytes(m.model);
    const unmerged = m.forward(ids());
    m.merge();
    expect(maxDiff(m.forward(ids()), unmerged)).toBeLessThan(1e-5);
    m.unmerge();
    expect(bytes(m.model)).toBe(before);
  });

  test("after untying as the message says, the merge is exact for the whole model", () => {
    const m = adapted(["emb"]);
    const W = m.model.head.weight.detach().clone();
    const unmerged = m.forward(ids());
    expect(maxDiff(unmerged, formula(m, W))).toBeLessThan(1e-5);
    m.model.head.weight = m.model.head.weight.detach().clone();
    m.merge();
    expect(maxDiff(m.forward(ids()), formula(m, W))).toBeLessThan(1e-5);
    expect(maxDiff(m.model.head.weight, W)).toBe(0);
    m.unmerge();
    expect(maxDiff(m.loraLayers()[0][1].base_layer.weight, W)).toBe(0);
  });

  test("a head sharing only storage (a detached view) keeps the pristine weight while merged, and is tied again after unmerge", () => {
    const m = adapted(["emb"], "storage");
    const W = m.model.head.weight.detach().clone();
    m.merge();
    expect(maxDiff(m.forward(ids()), formula(m, W))).toBeLessThan(1e-5);
    expect(maxDiff(m.model.head.weight, W)).toBe(0);
    m.unmerge();
    const embWeight = m.loraLayers()[0][1].base_layer.weight;
    expect(maxDiff(embWeight, W)).toBe(0);
    noGrad(() => init.constant_(embWeight, 0.25)); // one storage: the head sees the write
    expect((m.model.head.weight.toArray() as Float32Array).every((v) => v === 0.25)).toBe(true);
  });
});
