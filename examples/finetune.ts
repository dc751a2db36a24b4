/**
 * A LoRA fine-tuning script to copy: build a model, inject adapters, train, save the adapter in
 * PEFT's layout, load it back, merge it for deployment.
 *
 * Run from the repository: npm run setup && node dist/examples/finetune.js
 * In your own project, import from "torch-lora" instead of "../lib".
 */
import * as os from "os";
import * as path from "path";
import { Tensor, crossEntropy, lora, manualSeed, nn, noGrad, optim, tensor, tidy } from "../lib";

// A model is an nn.Module: fields holding modules are its children, as in PyTorch.
class Classifier extends nn.Module {
  emb = new nn.Embedding(100, 32, { paddingIdx: 0 });
  hidden = new nn.Linear(32, 64);
  out = new nn.Linear(64, 4);

  override forward(ids: Tensor): Tensor {
    // ids: (batch, tokens) → mean of the token embeddings → logits (batch, 4)
    const pooled = this.emb.forward(ids).mean(1);
    return this.out.forward(this.hidden.forward(pooled).relu());
  }
}

async function main(): Promise<void> {
  manualSeed(42);
  const model = new Classifier(); // in real use: model.loadStateDict(io.loadSafetensorsSync("base.safetensors"))

  // Inject LoRA into the embedding and both Linear layers. The base weights are frozen; only the
  // adapter factors train. The adapter starts as an exact no-op (B = 0), so step 0 = base model.
  const lm = lora.injectAdapter(model, { r: 8, loraAlpha: 16, targetModules: ["emb", "hidden", "out"] });
  console.log(lm.formatTrainableParameters());

  // A toy task: the label is the first token id modulo 4.
  const ids = tensor(
    Array.from({ length: 64 * 6 }, (_, i) => 1 + ((i * 37) % 99)),
    { dtype: "int64", shape: [64, 6] },
  );
  const labels = tensor(
    Array.from({ length: 64 }, (_, i) => (1 + ((i * 6 * 37) % 99)) % 4),
    { dtype: "int64" },
  );

  const opt = new optim.AdamW(lm.trainableParameters(), { lr: 2e-3 });
  for (let step = 1; step <= 100; step++) {
    // tidy(): every tensor the step creates (activations, loss) is freed when it returns,
    // instead of waiting for the garbage collector. Autograd keeps what backward needs.
    tidy(() => {
      const loss = crossEntropy(lm.forward(ids), labels);
      loss.backward(); // one autograd pass: gradients reach the adapter factors only
      opt.step(); // one native call over all parameters
      opt.zeroGrad();
      if (step % 25 === 0) console.log(`step ${step}: loss ${loss.item().toFixed(4)}`);
    });
  }

  // Save in PEFT's layout (adapter_model.safetensors + adapter_config.json): Python PEFT reads it.
  const dir = path.join(os.tmpdir(), "torch-lora-example-adapter");
  lm.saveAdapter(dir);
  console.log(`adapter saved to ${dir}`);

  // Later, or in another process: load the adapter onto a fresh copy of the base model.
  manualSeed(42);
  const reloaded = await lora.loadAdapter(new Classifier(), dir);
  const same = noGrad(() => reloaded.forward(ids).equal(lm.forward(ids)));
  console.log(`reloaded adapter gives identical outputs: ${same}`);

  // For deployment: merge the adapter into the base weights (off the event loop) and drop the
  // LoRA layers. Before unloading, unmerge() would restore the base weights bit for bit.
  const merged = (await reloaded.mergeAndUnloadAsync()) as Classifier;
  console.log(`merged model is plain again: ${merged.hidden instanceof nn.Linear}`);
  const mergedSame = noGrad(() => merged.forward(ids).allclose(lm.forward(ids), { rtol: 1e-5, atol: 1e-5 }));
  console.log(`merged model matches the adapter's outputs: ${mergedSame}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
