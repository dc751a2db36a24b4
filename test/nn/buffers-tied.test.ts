/**
 * Buffers (registerBuffer) and tied weights (one tensor under two names), as PyTorch has them:
 * what is a parameter, what the state dict holds, what to() moves, what optimizers update.
 */
import { Tensor, nn, optim, tensor, zeros } from "../../lib";
import { itTorch, py } from "../helpers/python";

class Masked extends nn.Module {
  proj = new nn.Linear(3, 3);
  declare mask: Tensor;
  declare scratch: Tensor;
  constructor() {
    super();
    this.registerBuffer("mask", tensor([1, 0, 1], { dtype: "bool" }));
    this.registerBuffer("scratch", zeros([2]), { persistent: false });
  }
}

describe("buffers", () => {
  it("are never parameters, are state-dict keys when persistent, and read back through the field", () => {
    const m = new Masked();
    expect(m.namedParameters().map(([n]) => n)).toEqual(["proj.weight", "proj.bias"]);
    expect(m.namedBuffers().map(([n]) => n)).toEqual(["mask", "scratch"]);
    expect(Object.keys(m.stateDict())).toEqual(["mask", "proj.weight", "proj.bias"]);
    expect(m.mask.toList()).toEqual([1, 0, 1]);
    // The optimizer that broke on a cached mask: only parameters reach it.
    expect(() => new optim.AdamW(m.parameters())).not.toThrow();
  });

  it("a buffer field can be replaced, and only by a Tensor or null", () => {
    const m = new Masked();
    m.mask = tensor([0, 0, 1], { dtype: "bool" });
    expect(m.stateDict().mask.toList()).toEqual([0, 0, 1]);
    expect(() => {
      (m as unknown as { mask: unknown }).mask = 3;
    }).toThrow(/Masked\.mask: a buffer holds a Tensor or null, got 3/);
    m.mask = null as unknown as Tensor;
    expect(Object.keys(m.stateDict())).toEqual(["proj.weight", "proj.bias"]);
  });

  it("loadStateDict fills persistent buffers and requires them when strict", () => {
    const m = new Masked();
    const state = { ...new Masked().stateDict(), mask: tensor([0, 1, 0], { dtype: "bool" }) };
    m.loadStateDict(state);
    expect(m.mask.toList()).toEqual([0, 1, 0]);
    const { mask: _omitted, ...withoutMask } = state;
    expect(() => m.loadStateDict(withoutMask)).toThrow(/missing keys: mask/);
    expect(() => m.loadStateDict({ ...state, scratch: zeros([2]) })).toThrow(/unexpected keys: scratch/);
  });

  it("to() casts floating buffers, keeps the dtype of the others, and moves them all", () => {
    const m = new Masked();
    m.to({ dtype: "float64" });
    expect(m.scratch.dtype).toBe("float64");
    expect(m.mask.dtype).toBe("bool");
    expect(m.proj.weight.dtype).toBe("float64");
    expect(m.parameters().every((p) => p.requiresGrad)).toBe(true);
  });

  it("refuses names that are taken or malformed", () => {
    const m = new Masked();
    expect(() => m.registerBuffer("proj", zeros([1]))).toThrow(/Masked already has an attribute "proj" \(a Linear\)/);
    expect(() => m.registerBuffer("a.b", zeros([1]))).toThrow(/name: expected a non-empty string without "\."/);
    expect(() => m.registerBuffer("x", [1] as unknown as Tensor)).toThrow(/tensor: expected a Tensor or null, got an array/);
  });

  it("a Tensor field registered as a buffer stops being a parameter", () => {
    class Cached extends nn.Module {
      table = zeros([4]);
      constructor() {
        super();
        this.registerBuffer("table", this.table);
      }
    }
    const c = new Cached();
    expect(c.parameters()).toEqual([]);
    expect(Object.keys(c.stateDict())).toEqual(["table"]);
  });
});

class TiedLM extends nn.Module {
  emb = new nn.Embedding(5, 3);
  head = new nn.Linear(3, 5, { bias: false });
  constructor() {
    super();
    this.head.weight = this.emb.weight; // as GPT-2's lm_head
  }
}

describe("tied weights", () => {
  it("stateDict has both keys, one tensor; parameters() yields it once", () => {
    const m = new TiedLM();
    const state = m.stateDict();
    expect(Object.keys(state)).toEqual(["emb.weight", "head.weight"]);
    expect(state["emb.weight"]).toBe(state["head.weight"]);
    expect(m.parameters()).toHaveLength(1);
    expect(m.numParameters()).toBe(15);
  });

  it("loadStateDict accepts both keys, and requires both when strict (as PyTorch)", () => {
    const m = new TiedLM();
    const w = tensor(
      Array.from({ length: 15 }, (_, i) => i),
      { shape: [5, 3] },
    );
    m.loadStateDict({ "emb.weight": w, "head.weight": w });
    expect(m.head.weight.toList()).toEqual(w.toList());
    expect(m.head.weight).toBe(m.emb.weight);
    expect(() => m.loadStateDict({ "emb.weight": w })).toThrow(/missing keys: head\.weight/);
    expect(m.loadStateDict({ "emb.weight": w.mul(2) }, { strict: false }).missingKeys).toEqual(["head.weight"]);
    expect(m.head.weight.toList()).toEqual(w.mul(2).toList());
  });

  it("an optimizer step updates the shared tensor once, with the gradient of both uses", () => {
    const m = new TiedLM();
    const before = m.emb.weight.detach().clone();
    const opt = new optim.SGD(m.parameters(), { lr: 0.5 });
    const ids = tensor([1, 3], { dtype: "int64" });
    (m.head.forward(m.emb.forward(ids) as Tensor) as Tensor).sum().backward();
    const grad = m.emb.weight.grad!.clone();
    opt.step();
    // One update by the summed gradient: w - lr·g, not w - 2·lr·g.
    expect(m.emb.weight.allclose(before.sub(grad.mul(0.5)), { atol: 1e-7 })).toBe(true);
    expect(m.head.weight).toBe(m.emb.weight);
  });

  it("an optimizer given the tied tensor under both modules' names refuses it rather than stepping twice", () => {
    const m = new TiedLM();
    expect(() => new optim.AdamW([...m.emb.parameters(), ...m.head.parameters()])).toThrow(/params\[1\]: the same tensor appears more than once/);
  });

  it("stay tied through to()", () => {
    const m = new TiedLM().to({ dtype: "float64" });
    expect(m.head.weight).toBe(m.emb.weight);
    expect(m.parameters()).toHaveLength(1);
  });

  itTorch("a PyTorch tied model's state dict (both keys) loads, and ours has PyTorch's keys", () => {
    const ref = py<{ keys: string[]; w: number[] }>(`
torch.manual_seed(0)
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(5, 3)
        self.head = torch.nn.Linear(3, 5, bias=False)
        self.head.weight = self.emb.weight
sd = M().state_dict()
out = {"keys": list(sd.keys()), "w": L(sd["head.weight"])}
`);
    const m = new TiedLM();
    expect(Object.keys(m.stateDict())).toEqual(ref.keys);
    const w = tensor(ref.w, { shape: [5, 3] });
    m.loadStateDict({ "emb.weight": w, "head.weight": w });
    expect(m.emb.weight.toList()).toEqual(w.toList());
  });
});
