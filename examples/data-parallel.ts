/**
 * Data-parallel LoRA training to copy: every process holds the model, trains on its share of
 * each epoch, and averages the adapter gradients with the others after every backward.
 *
 * Run from the repository: npm run setup && node dist/lib/cli.js launch --nproc-per-node 2 dist/examples/data-parallel.js
 * (installed: npx torch-lora launch --nproc-per-node 2 train.js). Run alone, it trains in one process.
 * In your own project, import from "torch-lora" instead of "../lib".
 */
import * as os from "os";
import * as path from "path";
import { Tensor, crossEntropy, dist, lora, manualSeed, nn, optim, tensor } from "../lib";

class Classifier extends nn.Module {
  emb = new nn.Embedding(50, 32);
  hidden = new nn.Linear(32, 64);
  out = new nn.Linear(64, 4);

  override forward(ids: Tensor): Tensor {
    return this.out.forward(this.hidden.forward(this.emb.forward(ids).mean(1)).relu());
  }
}

/** A toy task, the same on every rank: 8 token ids per row, the label is their sum modulo 4. */
function dataset(rows: number): { ids: number[][]; labels: number[] } {
  let s = 12345;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 50;
  const ids = Array.from({ length: rows }, () => Array.from({ length: 8 }, next));
  return { ids, labels: ids.map((r) => r.reduce((a, b) => a + b, 0) % 4) };
}

async function main(): Promise<void> {
  // Under `torch-lora launch`, RANK and WORLD_SIZE are set: join the others (env://).
  const distributed = process.env.WORLD_SIZE !== undefined;
  if (distributed) await dist.initProcessGroup({ backend: "gloo" });

  manualSeed(42); // the same base model everywhere (DataParallel checks the adapters match)
  const lm = lora.injectAdapter(new Classifier(), { r: 8, loraAlpha: 16, targetModules: ["emb", "hidden", "out"] });
  // Copies rank 0's adapter values to every rank, then averages gradients on syncGradients().
  const dp = distributed ? await dist.DataParallel.create(lm) : null;
  const opt = new optim.AdamW(lm.trainableParameters(), { lr: 1e-2 });

  const data = dataset(512);
  const sampler = new dist.DistributedSampler(data.ids.length, { shuffle: true, seed: 0 });
  const batchSize = 32; // per rank: the global batch is batchSize × world size
  for (let epoch = 0; epoch < 3; epoch++) {
    sampler.setEpoch(epoch); // a new shuffle each epoch, the same on every rank
    const indices = sampler.indices();
    let last = 0;
    for (let start = 0; start + batchSize <= indices.length; start += batchSize) {
      const rows = indices.slice(start, start + batchSize);
      const ids = tensor(
        rows.map((i) => data.ids[i]),
        { dtype: "int64" },
      );
      const labels = tensor(
        rows.map((i) => data.labels[i]),
        { dtype: "int64" },
      );
      const loss = crossEntropy(lm.forward(ids) as Tensor, labels);
      loss.backward();
      if (dp) await dp.syncGradients(); // every rank now holds the same averaged gradients
      opt.step();
      opt.zeroGrad();
      last = loss.item();
    }
    if (dist.isMainProcess()) console.log(`epoch ${epoch}: loss ${last.toFixed(3)} (rank 0's last batch)`);
  }

  const out = path.join(os.tmpdir(), "torch-lora-data-parallel-adapter");
  if (dp)
    await dp.saveAdapter(out); // rank 0 writes; the others wait until it is written
  else lm.saveAdapter(out);
  if (dist.isMainProcess()) console.log(`adapter saved to ${out}`);
  if (distributed) dist.destroyProcessGroup();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
