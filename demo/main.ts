/**
 * `npm run demo`: LoRA fine-tuning end to end on this machine, nothing downloaded.
 *
 * 1. Pretrain a small character-level language model on task A (English-like sentences).
 * 2. Inject LoRA into its Embedding and Linear layers (default init: embedding A normal, B zero).
 * 3. Check the adapter starts as an exact no-op, then fine-tune on task B (a related dialect).
 * 4. Compare base and adapted losses, check task A returns with adapters disabled, merge and
 *    unmerge (bit-exact), and save the adapter in PEFT's layout.
 *
 * Options: --device cpu|cuda[:N]  --quick (fewer steps, for smoke tests)  --out DIR
 *          --save-base (also write the pretrained base as base.safetensors, so that every check
 *          can be recomputed from the files by someone else)
 */
import * as fs from "fs";
import * as path from "path";
import { Device, Tensor, cuda, io, lora, manualSeed, noGrad, tensor } from "../lib";
import { ALPHABET, VOCAB, encode, generateText, makeExamples } from "./data";
import { CharModel } from "./model";
import { evaluate, train } from "./train";

interface DemoArgs {
  device: Device;
  quick: boolean;
  out: string;
  saveBase: boolean;
}

function parseArgs(argv: string[]): DemoArgs {
  const args: DemoArgs = { device: "cpu", quick: false, out: path.resolve("demo-output"), saveBase: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") args.quick = true;
    else if (a === "--save-base") args.saveBase = true;
    else if (a === "--device") args.device = argv[++i] as Device;
    else if (a === "--out") args.out = path.resolve(argv[++i]);
    else if (a === "--help" || a === "-h") {
      console.log("usage: npm run demo -- [--device cpu|cuda[:N]] [--quick] [--out DIR] [--save-base]");
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  if (args.device.startsWith("cuda") && !cuda.isAvailable()) {
    throw new Error(`--device ${args.device}: this libtorch build has no CUDA (or no GPU is visible); run with --device cpu`);
  }
  return args;
}

const CONTEXT = 8;
const fmt = (x: number) => x.toFixed(4);
const failures: string[] = [];

function check(ok: boolean, what: string): void {
  console.log(`  ${ok ? "✔" : "✘"} ${what}`);
  if (!ok) failures.push(what);
}

/** Greedy continuation of `prompt` for `length` characters. */
function complete(model: { forward(x: Tensor): unknown }, prompt: string, length: number, device: Device): string {
  let text = prompt;
  noGrad(() => {
    for (let i = 0; i < length; i++) {
      const window = encode(text.slice(-CONTEXT).padStart(CONTEXT, " "));
      const logits = model.forward(tensor(window, { dtype: "int64", shape: [1, CONTEXT], device })) as Tensor;
      text += ALPHABET[logits.argmax().item()];
    }
  });
  return text;
}

function snapshotBase(model: CharModel): Map<string, Buffer> {
  return new Map(
    model
      .namedParameters()
      .filter(([n]) => !n.includes("lora_"))
      .map(([n, p]) => [n.replace(".base_layer", ""), p.toBytes()]),
  );
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  manualSeed(0);
  const steps = args.quick ? { pretrain: 150, finetune: 120 } : { pretrain: 1500, finetune: 600 };
  const examples = (task: "A" | "B", count: number, seed: number) => {
    const e = makeExamples(encode(generateText(task, count, seed)), CONTEXT);
    return { ...e, inputs: e.inputs.to({ device: args.device }), targets: e.targets.to({ device: args.device }) };
  };
  const trainA = examples("A", 4000, 1);
  const evalA = examples("A", 300, 2);
  const trainB = examples("B", 1500, 3);
  const evalB = examples("B", 300, 4);
  console.log(`torch-lora demo — device ${args.device}, vocabulary of ${VOCAB} characters, context ${CONTEXT}`);
  console.log(`task A: "${generateText("A", 2, 9)}"`);
  console.log(`task B: "${generateText("B", 2, 9)}"\n`);

  // 1. Pretraining on task A.
  const model = new CharModel({ vocab: VOCAB, context: CONTEXT, embeddingDim: 24, hidden: 256 }).to({ device: args.device });
  console.log(`1. Pretraining the base model on task A (${model.numParameters().toLocaleString("en-US")} parameters)`);
  train(model, trainA, { steps: steps.pretrain, batchSize: 256, lr: 3e-3, label: "pretrain" });
  const baseLossA = evaluate(model, evalA);
  const baseLossB = evaluate(model, evalB);
  console.log(`  base model: eval loss on A ${fmt(baseLossA)}, on B ${fmt(baseLossB)}`);
  console.log(`  sample: "${complete(model, "the robot", 40, args.device)}"\n`);
  const baseWeights = snapshotBase(model);
  if (args.saveBase) {
    fs.mkdirSync(args.out, { recursive: true });
    io.saveStateDictSync(path.join(args.out, "base.safetensors"), model.stateDict());
  }

  // 2. LoRA injection.
  const lm = lora.injectAdapter(model, { r: 8, loraAlpha: 16, targetModules: ["emb", "fc1", "fc2"] });
  console.log("2. Injected LoRA (r=8, alpha=16) into emb, fc1, fc2 — embedding init: A ~ normal, B = 0");
  console.log(`  ${lm.formatTrainableParameters()}`);

  // 3. The adapter starts as an exact no-op.
  const withAdapter = evaluate(lm, evalB);
  const withoutAdapter = lm.withAdaptersDisabled(() => evaluate(lm, evalB));
  console.log(`3. Before the first step: loss on B with adapter ${withAdapter}, with adapters disabled ${withoutAdapter}`);
  check(withAdapter === withoutAdapter, "identical: the adapter starts as an exact no-op");

  console.log("\n4. Fine-tuning the adapter on task B");
  train(lm, trainB, { steps: steps.finetune, batchSize: 256, lr: 5e-3, label: "finetune" });
  const adaptedLossB = evaluate(lm, evalB);
  const disabledLossB = lm.withAdaptersDisabled(() => evaluate(lm, evalB));
  const disabledLossA = lm.withAdaptersDisabled(() => evaluate(lm, evalA));
  console.log(`  eval loss on B: base ${fmt(disabledLossB)} → adapted ${fmt(adaptedLossB)}`);
  check(adaptedLossB < 0.6 * disabledLossB, "the adapted model is clearly better on task B");
  console.log(`  eval loss on A with adapters disabled: ${fmt(disabledLossA)} (pretrained: ${fmt(baseLossA)})`);
  check(disabledLossA === baseLossA, "the base model's task-A behaviour returns exactly when adapters are disabled");
  console.log(`  sample (adapted): "${complete(lm, "the robot", 40, args.device)}"`);
  console.log(`  sample (disabled): "${lm.withAdaptersDisabled(() => complete(lm, "the robot", 40, args.device))}"\n`);

  // 5. Merge, unmerge, save.
  console.log("5. Merge, unmerge and save");
  const probe = evalB.inputs.narrow(0, 0, 512);
  const adapterOut = noGrad(() => lm.forward(probe));
  lm.merge({ safe: true });
  const mergedOut = noGrad(() => lm.forward(probe));
  const maxDiff = mergedOut.sub(adapterOut).abs().max().item();
  check(mergedOut.allclose(adapterOut, { rtol: 1e-5, atol: 1e-5 }), `merged output equals adapter output (max |Δ| ${maxDiff.toExponential(2)})`);
  lm.unmerge();
  const after = snapshotBase(model);
  const identical = [...baseWeights].every(([n, b]) => after.get(n)?.equals(b));
  check(identical, `after unmerge the ${baseWeights.size} base tensors are bit-identical to before fine-tuning`);
  fs.mkdirSync(args.out, { recursive: true });
  lm.saveAdapter(args.out);
  for (const file of fs.readdirSync(args.out).sort()) {
    console.log(`  wrote ${path.join(args.out, file)} (${fs.statSync(path.join(args.out, file)).size.toLocaleString("en-US")} bytes)`);
  }

  const seconds = (Date.now() - started) / 1000;
  const peakMiB = process.resourceUsage().maxRSS / 1024;
  console.log(`\nDone in ${seconds.toFixed(1)} s, peak RSS ${peakMiB.toFixed(0)} MiB.`);
  if (failures.length) {
    console.error(`\n${failures.length} check(s) failed:\n  ${failures.join("\n  ")}`);
    process.exit(1);
  }
}

try {
  main();
} catch (err) {
  console.error(`demo failed: ${(err as Error).message}`);
  process.exit(1);
}
