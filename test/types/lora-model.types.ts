/**
 * Compile-time checks of the public types (compiled by `tsc --noEmit -p test/types`, see
 * types.test.ts; never run). `LoraModel<M>` carries the wrapped model's type: `forward`, `model`,
 * `mergeAndUnload()` and `unload()` need no cast, and wrong uses fail to compile.
 */
import { Tensor, crossEntropy, lora, nn, tensor } from "../../lib";

class Classifier extends nn.Module {
  emb = new nn.Embedding(10, 4);
  head = new nn.Linear(4, 3);
  override forward(ids: Tensor): Tensor {
    return this.head.forward(this.emb.forward(ids));
  }
}

export function typedUses(dir: string): void {
  const lm = lora.injectAdapter(new Classifier(), { targetModules: ["emb", "head"] });
  const logits: Tensor = lm.forward(tensor([1, 2], { dtype: "int64" }));
  crossEntropy(logits, tensor([0, 2], { dtype: "int64" })).backward();
  const model: Classifier = lm.model;
  const head: nn.Linear = lm.model.head;
  const merged: Classifier = lm.mergeAndUnload();
  const unloaded: Classifier = lm.unload();
  const mergedLater: Promise<Classifier> = lm.mergeAndUnloadAsync();
  const loaded: lora.LoraModel<Classifier> = lora.loadAdapter(new Classifier(), dir);
  const added: lora.LoraModel<Classifier> = lora.loadAdapter(lm, dir, { adapterName: "other" });
  const loadedLater: Promise<lora.LoraModel<Classifier>> = lora.loadAdapterAsync(new Classifier(), dir);
  // Without a type argument a LoraModel is still a LoraModel of any module.
  const untyped: lora.LoraModel = lm;
  untyped.forward(1, "two", null);
  void [model, head, merged, unloaded, mergedLater, loaded, added, loadedLater];

  // @ts-expect-error forward takes a Tensor of ids
  lm.forward("ids");
  // @ts-expect-error forward takes one argument
  lm.forward(tensor([1]), 2);
  // @ts-expect-error forward returns a Tensor, not a string
  const text: string = lm.forward(tensor([1]));
  // @ts-expect-error the wrapped model has no such field
  void lm.model.decoder;
  // @ts-expect-error mergeAndUnload returns the Classifier, not a Linear
  const wrong: nn.Linear = lm.mergeAndUnload();
  // @ts-expect-error a LoraModel of a Classifier is not a LoraModel of a Linear
  const other: lora.LoraModel<nn.Linear> = lora.loadAdapter(new Classifier(), dir);
  // @ts-expect-error injectAdapter takes a Module
  lora.injectAdapter({ forward: () => 1 }, { targetModules: ["x"] });
  void [text, wrong, other];
}
