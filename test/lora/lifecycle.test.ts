/**
 * Adapter lifecycle rules: loadStateDict waits until nothing is merged; a second injection is
 * refused; trainability is kept per adapter; new LoRA layers follow their parent's train/eval
 * mode; one adapter-name rule everywhere, checked before anything is written.
 */
import * as fs from "fs";
import * as path from "path";
import { StateError, Tensor, init, lora, nn, noGrad, tensor } from "../../lib";
import { EmbFc, baseBytes, pristineBytes, pristineOf, referenceForward } from "../helpers/lora-reference";
import { makeTempDir } from "../helpers/temp";

const IDS = [3, 1, 4, 1, 5];
const ids = (): Tensor => tensor(IDS, { dtype: "int64" });
const tmp = makeTempDir("tl-lifecycle-");
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function adapted(name = "a"): lora.LoraModel<EmbFc> {
  const m = lora.injectAdapter(new EmbFc(), { targetModules: ["emb", "fc"], r: 2, loraAlpha: 4 }, name);
  for (const [, l] of m.loraLayers()) noGrad(() => init.normal_(l.factors(name)[1], 0, 0.5));
  return m;
}

const allBytes = (m: nn.Module): string =>
  m
    .namedParameters()
    .map(([n, p]) => `${n}:${p.requiresGrad}:${p.toBytes().toString("hex")}`)
    .join("|");

describe("loadStateDict on a LoRA model", () => {
  test("while merged: a StateError saying to unmerge first, nothing written; unmerge still restores the base", () => {
    const m = adapted();
    const pristine = pristineOf(m);
    m.merge();
    const before = allBytes(m.model);
    const sd = m.model.stateDict();
    const replaced: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(sd)) replaced[k] = v.mul(0).add(7);
    expect(() => m.model.loadStateDict(replaced)).toThrow(StateError);
    expect(() => m.model.loadStateDict(replaced)).toThrow(/loadStateDict: (emb|fc) has merged adapters \(a\); unmerge\(\) first/);
    expect(() => m.loadStateDict({})).toThrow(StateError); // through the LoraModel as well
    expect(allBytes(m.model)).toBe(before);
    m.unmerge();
    expect(baseBytes(m)).toBe(pristineBytes(pristine));
  });

  test("while an async merge is in flight: a StateError, nothing written", async () => {
    const m = adapted();
    const before = allBytes(m.model);
    const merging = m.mergeAsync();
    expect(() => m.model.loadStateDict(m.model.stateDict())).toThrow(/loadStateDict: an async merge is in flight/);
    await merging;
    m.unmerge();
    expect(allBytes(m.model)).toBe(before);
  });

  test("unmerged: loads, and a later merge and unmerge use the loaded base", () => {
    const m = adapted();
    const source = adapted();
    m.model.loadStateDict(source.model.stateDict());
    expect(allBytes(m.model).replace(/:(true|false):/g, ":")).toBe(allBytes(source.model).replace(/:(true|false):/g, ":"));
    const pristine = pristineOf(m);
    m.merge();
    const err = (
      m
        .forward(ids())
        .sub(referenceForward(m, pristine, IDS))
        .abs()
        .max()
        .toArray() as Float32Array
    )[0];
    expect(err).toBeLessThan(1e-5);
    m.unmerge();
    expect(baseBytes(m)).toBe(pristineBytes(pristine));
  });
});

describe("a second injectAdapter", () => {
  test("on an adapted model is refused, pointing to addAdapter; the first adapter is untouched", () => {
    const m = adapted();
    const before = allBytes(m.model);
    const err = (() => {
      try {
        lora.injectAdapter(m.model, { targetModules: ["fc"], r: 8 });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(StateError);
    expect(err!.message).toMatch(/already has LoRA adapters \("a" in emb, fc\).*addAdapter\(name, config\)/);
    expect(() => lora.injectAdapter(m, { targetModules: ["fc"] }, "b")).toThrow(StateError); // the LoraModel itself
    expect(allBytes(m.model)).toBe(before);
    expect(m.loraLayers().map(([, l]) => l.settings("a")!.r)).toEqual([2, 2]);
  });

  test("loadAdapter into the adapted plain model is refused too; into the LoraModel it adds", () => {
    const saved = adapted("default");
    const dir = path.join(tmp, "second");
    saved.saveAdapter(dir);
    const m = adapted();
    const before = allBytes(m.model);
    expect(() => lora.loadAdapter(m.model, dir, { adapterName: "b" })).toThrow(StateError);
    expect(allBytes(m.model)).toBe(before);
    lora.loadAdapter(m, dir, { adapterName: "b" });
    expect(m.adapterNames).toEqual(["a", "b"]);
  });
});

describe("trainability is per adapter", () => {
  const trainable = (m: lora.LoraModel<EmbFc>, name: string): boolean[] => m.loraLayers().flatMap(([, l]) => l.factors(name).map((t) => t.requiresGrad));

  test("an adapter loaded with isTrainable: false stays frozen when others are added, deleted or activated", () => {
    const dir = path.join(tmp, "frozen");
    adapted("default").saveAdapter(dir);
    const m = lora.loadAdapter(new EmbFc(), dir, { isTrainable: false });
    expect(trainable(m, "default")).toEqual([false, false, false, false]);
    m.addAdapter("b", { targetModules: ["fc"], r: 1 });
    expect(trainable(m, "default")).toEqual([false, false, false, false]);
    m.setAdapter(["default", "b"]);
    expect(trainable(m, "default")).toEqual([false, false, false, false]);
    expect(
      m
        .loraLayers()
        .find(([p]) => p === "fc")![1]
        .factors("b")
        .map((t) => t.requiresGrad),
    ).toEqual([true, true]);
    m.deleteAdapter("b");
    m.setAdapter("default");
    expect(trainable(m, "default")).toEqual([false, false, false, false]);
    expect(m.trainableParameters()).toEqual([]);
    m.setRequiresGrad("default", true);
    expect(trainable(m, "default")).toEqual([true, true, true, true]);
    m.setRequiresGrad(["default"], false);
    expect(trainable(m, "default")).toEqual([false, false, false, false]);
    expect(() => m.setRequiresGrad("nope", true)).toThrow(/no adapter the string "nope"/);
    expect(() => m.setRequiresGrad("default", "yes" as never)).toThrow(/requiresGrad: expected a boolean/);
  });

  test("a trainable adapter made inactive and active again trains again; base weights never train", () => {
    const m = adapted();
    m.addAdapter("b", { targetModules: ["fc"], r: 1 });
    m.setAdapter("b");
    expect(trainable(m, "a")).toEqual([false, false, false, false]);
    m.setAdapter("a");
    expect(trainable(m, "a")).toEqual([true, true, true, true]);
    expect(m.loraLayers().every(([, l]) => !l.base_layer.weight.requiresGrad)).toBe(true);
  });
});

describe("new LoRA layers follow their parent's mode", () => {
  test("injecting into an eval() model gives LoRA layers in eval mode: dropout off, forward deterministic and equal to the formula", () => {
    const model = new EmbFc().eval();
    const m = lora.injectAdapter(model, { targetModules: ["emb", "fc"], r: 2, loraDropout: 0.9 });
    for (const [, l] of m.loraLayers()) noGrad(() => init.normal_(l.factors("default")[1], 0, 0.5));
    expect(
      m.model
        .namedModules()
        .filter(([, x]) => x.training)
        .map(([p]) => p),
    ).toEqual([]);
    const pristine = pristineOf(m);
    const y = m.forward(ids());
    const err = (
      y
        .sub(referenceForward(m, pristine, IDS))
        .abs()
        .max()
        .toArray() as Float32Array
    )[0];
    expect(err).toBeLessThan(1e-5);
    m.addAdapter("b", { targetModules: ["fc"], r: 1, loraDropout: 0.5 });
    expect(
      m.model
        .namedModules()
        .filter(([, x]) => x.training)
        .map(([p]) => p),
    ).toEqual([]);
    m.train();
    expect(m.model.namedModules().every(([, x]) => x.training)).toBe(true);
  });

  test("injecting into a training model gives training LoRA layers", () => {
    const m = lora.injectAdapter(new EmbFc(), { targetModules: ["fc"], r: 2 });
    expect(m.loraLayers()[0][1].training).toBe(true);
  });
});

describe("adapter names: one rule everywhere, checked before anything is written", () => {
  const BAD = ["a/b", "a\\b", "a\0b", "..", "a.b", "", "/abs"];

  test.each(BAD.map((n) => [JSON.stringify(n), n]))("%s is refused by inject, add, set, delete, save and load with a TypeError; nothing changes", (_l, bad) => {
    const plain = new EmbFc();
    const plainBefore = allBytes(plain);
    expect(() => lora.injectAdapter(plain, { targetModules: ["fc"] }, bad)).toThrow(TypeError);
    expect(plain.namedModules().some(([, x]) => x instanceof lora.LoraLayer)).toBe(false);
    expect(allBytes(plain)).toBe(plainBefore);

    const m = adapted();
    const before = allBytes(m.model);
    for (const call of [
      () => m.addAdapter(bad, { targetModules: ["fc"], r: 1 }),
      () => m.setAdapter(bad),
      () => m.setAdapter(["a", bad]),
      () => m.deleteAdapter(bad),
      () => m.setRequiresGrad(bad, false),
      () => m.merge({ adapterNames: [bad] }),
    ]) {
      expect(call).toThrow(bad === "" || /[./\\\0]/.test(bad) ? /adapterName/ : /./);
    }
    expect(() => m.addAdapter(bad, { targetModules: ["fc"], r: 1 })).toThrow(/without dots, slashes, backslashes or NUL/);
    expect(m.adapterNames).toEqual(["a"]);
    expect(allBytes(m.model)).toBe(before);

    const dir = path.join(tmp, `names-${BAD.indexOf(bad)}`);
    expect(() => m.saveAdapter(dir, { adapterName: bad })).toThrow(TypeError);
    expect(fs.existsSync(dir)).toBe(false);
    m.saveAdapter(dir);
    expect(() => lora.loadAdapter(m, dir, { adapterName: bad })).toThrow(TypeError);
    expect(m.adapterNames).toEqual(["a"]);
  });

  test("an unknown (well-formed) name gives the one 'no such adapter' RangeError, listing the adapters", () => {
    const m = adapted();
    for (const call of [
      () => m.setAdapter("zz"),
      () => m.deleteAdapter("zz"),
      () => m.setRequiresGrad("zz"),
      () => m.saveAdapter(path.join(tmp, "zz"), { adapterName: "zz" }),
    ]) {
      expect(call).toThrow(RangeError);
      expect(call).toThrow('adapterName: no adapter the string "zz" (adapters: a)');
    }
    expect(() => m.merge({ adapterNames: ["zz"] })).toThrow('adapterNames: no adapter the string "zz" (adapters: a)');
  });
});
