/** The demo's training and evaluation loops, written out explicitly as a user would. */
import { Tensor, crossEntropy, noGrad, nn, optim, tidy } from "../lib";
import { Examples, batchAt } from "./data";
import { Progress } from "./progress";

export interface TrainOptions {
  steps: number;
  batchSize: number;
  lr: number;
  label: string;
  /** Parameters to train (the model's trainable parameters by default). */
  parameters?: Tensor[];
  /** Called after every step with its loss (for loss curves). */
  onStep?: (step: number, loss: number) => void;
  /** No progress display. */
  quiet?: boolean;
  /**
   * The loss of one batch, for models that read their targets from the inputs (a GPT reads
   * windows whose next characters are its targets). Default: cross-entropy of
   * `model.forward(inputs)` against `targets`.
   */
  loss?: (model: nn.Module, batch: { inputs: Tensor; targets: Tensor }) => Tensor;
}

/** Trains `model` on `examples` with AdamW and a warmup+cosine schedule; returns the last loss. */
export function train(model: nn.Module, examples: Examples, options: TrainOptions): number {
  const params = options.parameters ?? model.parameters().filter((p) => p.requiresGrad);
  const opt = new optim.AdamW(params, { lr: options.lr, weightDecay: 0 });
  const schedule = new optim.LRScheduler(
    opt,
    optim.linearWarmupCosine({ warmupSteps: Math.ceil(options.steps / 20), totalSteps: options.steps, minLrRatio: 0.1 }),
  );
  const progress = options.quiet ? null : new Progress(options.label, options.steps);
  const context = examples.inputs.shape[1];
  model.train();
  const started = process.hrtime.bigint();
  let last = NaN;
  for (let step = 1; step <= options.steps; step++) {
    // One scope per step: the batch, activations and loss are freed when it ends, not by a
    // later garbage collection (autograd keeps what backward needs on its own).
    last = tidy(() => {
      const batch = batchAt(examples, (step - 1) * options.batchSize, options.batchSize);
      const loss = options.loss ? options.loss(model, batch) : crossEntropy(model.forward(batch.inputs) as Tensor, batch.targets);
      loss.backward();
      optim.clipGradNorm(params, 1.0);
      opt.step();
      opt.zeroGrad();
      return loss.item();
    });
    schedule.step();
    options.onStep?.(step, last);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    progress?.update(step, { loss: last, tokensPerSecond: (step * options.batchSize * (context + 1)) / seconds });
  }
  progress?.stop();
  model.eval();
  return last;
}

/** Mean cross-entropy of `model` over `examples`, without gradients, in evaluation mode. */
export function evaluate(model: nn.Module, examples: Examples, batchSize = 1024): number {
  const wasTraining = model.training;
  model.eval();
  let total = 0;
  noGrad(() => {
    for (let start = 0; start < examples.count; start += batchSize) {
      const size = Math.min(batchSize, examples.count - start);
      total += tidy(() => {
        const inputs = examples.inputs.narrow(0, start, size);
        const targets = examples.targets.narrow(0, start, size);
        return crossEntropy(model.forward(inputs) as Tensor, targets, { reduction: "sum" }).item();
      });
    }
  });
  model.train(wasTraining);
  return total / examples.count;
}
