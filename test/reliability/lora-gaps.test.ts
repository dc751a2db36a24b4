/**
 * Gaps found in the LoRA layer code by the reliability tests. Each test states the behaviour we
 * want; each failed before its fix.
 */
import { StateError, Tensor, lora, nn, noGrad, init, tensor } from "../../lib";

class Two extends nn.Module {
  emb = new nn.Embedding(10, 4);
  fc = new nn.Linear(4, 6);
  override forward(ids: Tensor): Tensor {
    return this.fc.forward(this.emb.forward(ids));
  }
}

function injected(): lora.LoraModel {
  const m = lora.injectAdapter(new Two(), { targetModules: ["emb", "fc"], r: 2 });
  for (const [, l] of m.loraLayers()) noGrad(() => init.normal_(l.factors("default")[1]));
  return m;
}

const bytes = (m: lora.LoraModel): string =>
  m.model
    .namedParameters()
    .map(([n, p]) => n + p.toBytes().toString("hex"))
    .join("|");

// withAdaptersDisabled ends with enableAdapters() whatever the state before, and disabling
// unmerges: the call is not transparent (found by the API fuzzer).
test("withAdaptersDisabled restores a previously disabled state", () => {
  const m = injected();
  m.disableAdapters();
  m.withAdaptersDisabled(() => m.forward(tensor([1], { dtype: "int64" })));
  expect(m.loraLayers().every(([, l]) => l.disabled)).toBe(true);
});

test("withAdaptersDisabled around a merged model leaves it merged with the same weights", () => {
  const m = injected();
  m.merge();
  const merged = bytes(m);
  m.withAdaptersDisabled(() => m.forward(tensor([1], { dtype: "int64" })));
  expect(bytes(m)).toBe(merged);
});

// LoraLinear / LoraEmbedding accept any base (null, the other layer type) and fail later with
// unrelated messages (or, for LoraLinear over an Embedding, silently return a result).
test("new LoraLinear(base) refuses a base that is not a Linear or Conv1D", () => {
  expect(() => new lora.LoraLinear(null as never)).toThrow(TypeError);
  expect(() => new lora.LoraLinear(new nn.Embedding(3, 3) as never)).toThrow(/base/);
});

test("new LoraEmbedding(base) refuses a base that is not an Embedding", () => {
  expect(() => new lora.LoraEmbedding(new nn.Linear(3, 3) as never)).toThrow(/base/);
});

// native/lora.cc passes the input to ATen without a dtype check: the message names no argument
// ("expected scalar type Double but found Float").
test("a LoRA Linear given float64 input names the argument and both dtypes", () => {
  const m = injected();
  expect(() => (m.model as Two).fc.forward(tensor([[1, 2, 3, 4]], { dtype: "float64" }))).toThrow(/input: expected dtype float32.*got float64/);
});

// Module.to() replaces the base weight tensor, but the exact-unmerge backup stays in the old
// dtype: after to() on a merged model, unmerge() can never succeed.
test("to() on a merged model either refuses with a StateError or keeps unmerge working", () => {
  const m = injected();
  m.merge();
  let refused = false;
  try {
    m.model.to({ dtype: "float64" });
  } catch (e) {
    refused = e instanceof StateError;
  }
  if (!refused) expect(() => m.unmerge()).not.toThrow();
  else expect(m.loraLayers().every(([, l]) => l.base_layer.weight.dtype === "float32")).toBe(true);
});

// Module.to() is not guarded by the async-merge check: the merge then writes into the old tensor.
test("to() while an async merge is in flight fails with a StateError", async () => {
  const m = injected();
  const pending = m.mergeAsync();
  let error: unknown;
  try {
    m.to({ dtype: "float64" });
  } catch (e) {
    error = e;
  }
  await pending.catch(() => undefined);
  expect(error).toBeInstanceOf(StateError);
});

// A huge rank on a tiny layer asked for gigabytes before any check.
test("a rank far beyond a layer's size is refused before allocating", () => {
  expect(() => lora.injectAdapter(new Two(), { targetModules: ["fc"], r: 1e9 })).toThrow(
    /LoraConfig\.r: rank 1000000000 for fc is far beyond its weight.s size \[6, 4\]/,
  );
});
