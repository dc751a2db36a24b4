/**
 * Tensor scopes (tidy, tidyAsync, keep): which tensors a scope frees and which it leaves, in
 * nested, throwing and concurrent async scopes; and that freeing a forward's intermediates
 * never changes the gradients backward computes (autograd holds its own references).
 */
import { Tensor, crossEntropy, keep, lora, manualSeed, nn, noGrad, ones, randn, tensor, tidy, tidyAsync } from "../../lib";
import { expectClose } from "../helpers/stats";

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("tidy", () => {
  it("disposes the tensors created inside and not returned; the returned one and outer ones survive", () => {
    const x = ones([2, 2]);
    let a!: Tensor;
    let b!: Tensor;
    const y = tidy(() => {
      a = x.add(1);
      b = a.mul(2);
      return b.sum();
    });
    expect(a.isDisposed).toBe(true);
    expect(b.isDisposed).toBe(true);
    expect(x.isDisposed).toBe(false);
    expect(y.isDisposed).toBe(false);
    expect(y.item()).toBe(16);
    expect(() => a.add(1)).toThrow(/disposed and can no longer be used/);
  });

  it("keeps tensors inside a returned array, plain object or Map, at any depth", () => {
    const made: Tensor[] = [];
    const mk = (v: number) => {
      const t = tensor([v]).add(0);
      made.push(t);
      return t;
    };
    const out = tidy(() => {
      mk(-1);
      return { list: [mk(1), { deep: mk(2) }], map: new Map([["k", mk(3)]]), n: 4 };
    });
    expect(made[0].isDisposed).toBe(true);
    expect((out.list[0] as Tensor).item()).toBe(1);
    expect((out.list[1] as { deep: Tensor }).deep.item()).toBe(2);
    expect(out.map.get("k")!.item()).toBe(3);
    // The scalar intermediates `tensor([v])` were not returned: freed.
    expect(made.filter((t) => t.isDisposed).length).toBe(1);
  });

  it("nests: what an inner scope returns belongs to the outer one", () => {
    let inner!: Tensor;
    let innerTemp!: Tensor;
    let outerTemp!: Tensor;
    const result = tidy(() => {
      inner = tidy(() => {
        innerTemp = ones([3]).mul(3);
        return innerTemp.sum();
      });
      expect(innerTemp.isDisposed).toBe(true);
      expect(inner.isDisposed).toBe(false);
      outerTemp = inner.add(1);
      return outerTemp.mul(2);
    });
    expect(inner.isDisposed).toBe(true);
    expect(outerTemp.isDisposed).toBe(true);
    expect(result.item()).toBe(20);
  });

  it("keep(t) lets a tensor outlive its scope (and the enclosing ones)", () => {
    let kept!: Tensor;
    let temp!: Tensor;
    tidy(() => {
      tidy(() => {
        temp = ones([2]);
        kept = keep(temp.add(5));
      });
    });
    expect(temp.isDisposed).toBe(true);
    expect(kept.isDisposed).toBe(false);
    expect(kept.toList()).toEqual([6, 6]);
    expect(() => keep(3 as unknown as Tensor)).toThrow(/keep: expected a Tensor, got/);
  });

  it("disposes when fn throws, and rethrows the error", () => {
    let temp!: Tensor;
    expect(() =>
      tidy(() => {
        temp = ones([2]).add(1);
        throw new RangeError("boom");
      }),
    ).toThrow("boom");
    expect(temp.isDisposed).toBe(true);
  });

  it("refuses an async fn (it cannot follow await) and still frees what it made", () => {
    let temp!: Tensor;
    expect(() =>
      tidy((() => {
        temp = ones([1]);
        return Promise.resolve(temp);
      }) as unknown as () => Tensor),
    ).toThrow(/tidy: fn returned a Promise; use tidyAsync/);
    expect(temp.isDisposed).toBe(true);
    expect(() => tidy(42 as unknown as () => void)).toThrow(/fn: expected a function, got/);
  });

  it("leaves module parameters, LoRA factors and a merge's backup alive when built inside a scope", () => {
    manualSeed(1);
    const model = tidy(() => {
      const m = new nn.Sequential(new nn.Linear(4, 3), new nn.ReLU(), new nn.Linear(3, 2));
      m.forward(ones([2, 4])); // its intermediates and output are freed
      return m;
    });
    expect(model.parameters().every((p) => !p.isDisposed)).toBe(true);
    expect((noGrad(() => model.forward(ones([1, 4]))) as Tensor).shape).toEqual([1, 2]);

    const lm = tidy(() => lora.injectAdapter(new nn.Sequential(new nn.Linear(4, 4)), { r: 2, targetModules: ["0"], initLoraWeights: false }));
    expect(lm.parameters().every((p) => !p.isDisposed)).toBe(true);
    const baseWeight = () => lm.namedParameters().find(([n]) => n.endsWith("base_layer.weight"))![1];
    const w0 = baseWeight().detach().clone();
    tidy(() => lm.merge());
    expect(baseWeight().equal(w0)).toBe(false);
    lm.unmerge(); // needs the backup the merge took inside the scope
    expect(baseWeight().equal(w0)).toBe(true);
  });
});

describe("the library's forwards free their own intermediates", () => {
  class Doubler extends nn.Module {
    readonly inputs: Tensor[] = [];
    override forward(x: Tensor): Tensor {
      this.inputs.push(x);
      return x.mul(2);
    }
  }

  it("nn.Sequential disposes each intermediate, never the caller's input nor its output", () => {
    const [a, b, c] = [new Doubler(), new Doubler(), new Doubler()];
    const seq = new nn.Sequential(a, b, new nn.Dropout(0.5), c).eval(); // eval: Dropout passes its input through
    const x = tensor([1, 2]);
    const y = seq.forward(x) as Tensor;
    expect(y.toList()).toEqual([8, 16]);
    expect(x.isDisposed).toBe(false);
    expect(a.inputs[0]).toBe(x);
    expect(b.inputs[0].isDisposed).toBe(true); // x·2
    expect(c.inputs[0].isDisposed).toBe(true); // x·4, through Dropout unchanged
  });

  it("Conv1D's forward equals x·W + b computed separately, with gradients", () => {
    manualSeed(3);
    const conv = new nn.Conv1D(3, 4);
    const x = randn([2, 4]);
    const y = conv.forward(x);
    expect(y.allclose(x.matmul(conv.weight).add(conv.bias), { atol: 1e-6 })).toBe(true);
    y.sum().backward();
    expect(conv.bias.grad!.toList()).toEqual([2, 2, 2]);
  });
});

describe("gradients after disposing a forward's intermediates", () => {
  // A two-layer net in float64 with every op's result disposed by the scope right after the
  // loss is computed; backward runs afterwards on the graph autograd kept.
  const X = randnValues(6 * 4, 3);
  const W1 = randnValues(4 * 5, 4);
  const W2 = randnValues(5 * 3, 5);
  const targets = () => tensor([0, 2, 1, 1, 0, 2], { dtype: "int64" });
  const f64 = (v: number[], shape: number[], requiresGrad = false) => tensor(v, { shape, dtype: "float64", requiresGrad });
  const loss = (x: Tensor, w1: Tensor, w2: Tensor) => crossEntropy(x.matmul(w1).tanh().mul(x.matmul(w1).sigmoid()).matmul(w2).softmax(1).log(), targets());

  it("equal central finite differences and the unscoped computation", () => {
    const w1 = f64(W1, [4, 5], true);
    const w2 = f64(W2, [5, 3], true);
    const x = f64(X, [6, 4]);
    const intermediates: Tensor[] = [];
    const l = tidy(() => {
      const h = x.matmul(w1);
      const t = h.tanh();
      const s = x.matmul(w1).sigmoid();
      const p = t.mul(s).matmul(w2).softmax(1);
      intermediates.push(h, t, s, p);
      return crossEntropy(p.log(), targets());
    });
    expect(intermediates.every((t) => t.isDisposed)).toBe(true);
    l.backward();
    const g1 = w1.grad!.toList();
    const g2 = w2.grad!.toList();

    // Second code path: the same loss without any scope or dispose.
    const r1 = f64(W1, [4, 5], true);
    const r2 = f64(W2, [5, 3], true);
    loss(f64(X, [6, 4]), r1, r2).backward();
    expect(g1).toEqual(r1.grad!.toList());
    expect(g2).toEqual(r2.grad!.toList());

    // Finite differences on a few entries of W1 and every entry of W2.
    const value = (v1: number[], v2: number[]) => noGrad(() => loss(f64(X, [6, 4]), f64(v1, [4, 5]), f64(v2, [5, 3])).item());
    const h = 1e-6;
    const numeric2 = W2.map((_, i) => {
      const p = W2.slice();
      const m = W2.slice();
      p[i] += h;
      m[i] -= h;
      return (value(W1, p) - value(W1, m)) / (2 * h);
    });
    expectClose(g2, numeric2, 1e-7);
    const numeric1 = [0, 7, 19].map((i) => {
      const p = W1.slice();
      const m = W1.slice();
      p[i] += h;
      m[i] -= h;
      return (value(p, W2) - value(m, W2)) / (2 * h);
    });
    expectClose([g1[0], g1[7], g1[19]], numeric1, 1e-7);
  });

  it("a LoRA model trained one step inside tidy gets the same gradients as without it", () => {
    const build = () => {
      manualSeed(7);
      const base = new nn.Sequential(new nn.Linear(8, 16), new nn.GELU(), new nn.Linear(16, 4));
      return lora.injectAdapter(base, { r: 2, targetModules: ["0", "2"], initLoraWeights: false });
    };
    const x = randn([5, 8]);
    const y = tensor([0, 1, 2, 3, 0], { dtype: "int64" });
    const scoped = build();
    tidy(() => crossEntropy(scoped.forward(x) as Tensor, y).backward());
    const plain = build();
    crossEntropy(plain.forward(x) as Tensor, y).backward();
    const grads = (m: lora.LoraModel) => m.trainableParameters().map((p) => p.grad!.toList());
    expect(grads(scoped)).toEqual(grads(plain));
    expect(x.isDisposed).toBe(false);
  });
});

describe("tidyAsync", () => {
  it("follows the scope across await and disposes when the promise settles", async () => {
    let before!: Tensor;
    let after!: Tensor;
    const out = await tidyAsync(async () => {
      before = ones([2]).add(1);
      await tick();
      after = before.mul(3);
      await tick();
      return after.sum();
    });
    expect(before.isDisposed).toBe(true);
    expect(after.isDisposed).toBe(true);
    expect(out.item()).toBe(12);
  });

  it("keeps concurrent scopes apart: each frees only its own tensors", async () => {
    const madeBy: Record<string, Tensor[]> = { a: [], b: [] };
    let aDone = false;
    const run = async (name: "a" | "b", steps: number) =>
      tidyAsync(async () => {
        for (let i = 0; i < steps; i++) {
          madeBy[name].push(ones([1]).add(i));
          await tick();
          if (name === "b" && aDone) {
            // a has finished: none of b's tensors may have been freed by a's scope.
            expect(madeBy.b.every((t) => !t.isDisposed)).toBe(true);
          }
        }
        return madeBy[name][0];
      });
    const pa = run("a", 3).then((t) => {
      aDone = true;
      return t;
    });
    const pb = run("b", 6);
    const [ra, rb] = await Promise.all([pa, pb]);
    expect(madeBy.a.slice(1).every((t) => t.isDisposed)).toBe(true);
    expect(madeBy.b.slice(1).every((t) => t.isDisposed)).toBe(true);
    expect(ra.isDisposed).toBe(false);
    expect(rb.isDisposed).toBe(false);
  });

  it("leaves alone a tensor made by a timer that a finished scope left behind", async () => {
    let later!: Promise<Tensor>;
    await tidyAsync(async () => {
      later = new Promise((resolve) => setTimeout(() => resolve(ones([1]).add(1)), 5));
    });
    const t = await later;
    const next = await tidyAsync(async () => t.mul(3)); // a new scope after the old one closed
    await tick();
    expect(t.isDisposed).toBe(false);
    expect(next.item()).toBe(6);
  });

  it("nests with sync scopes both ways, and rejects with fn's error after freeing", async () => {
    let syncTemp!: Tensor;
    let asyncTemp!: Tensor;
    const r = await tidyAsync(async () => {
      await tick();
      const v = tidy(() => {
        syncTemp = ones([2]).mul(2);
        return syncTemp.sum();
      });
      expect(syncTemp.isDisposed).toBe(true);
      asyncTemp = v.add(1);
      return asyncTemp.mul(1);
    });
    expect(asyncTemp.isDisposed).toBe(true);
    expect(r.item()).toBe(5);

    // An async scope started inside a sync one: its tensors (also after await) are its own.
    let innerAfterAwait!: Tensor;
    let pending!: Promise<Tensor>;
    tidy(() => {
      pending = tidyAsync(async () => {
        await tick();
        innerAfterAwait = ones([1]).add(1);
        return innerAfterAwait.mul(2);
      });
    });
    const fromInner = await pending;
    expect(innerAfterAwait.isDisposed).toBe(true);
    expect(fromInner.isDisposed).toBe(false); // its sync parent had closed: nobody owns it now
    expect(fromInner.item()).toBe(4);

    let failedTemp!: Tensor;
    await expect(
      tidyAsync(async () => {
        failedTemp = ones([1]);
        await tick();
        throw new Error("async boom");
      }),
    ).rejects.toThrow("async boom");
    expect(failedTemp.isDisposed).toBe(true);
  });
});

/** Deterministic values in [-1, 1). */
function randnValues(n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 22695477) + 1) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}
