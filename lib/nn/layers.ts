/** Plain layers: Linear, Conv1D (GPT-2's transposed Linear) and Embedding, initialized as PyTorch does. */
import { native } from "../binding";
import { Device, Dtype } from "../dtype";
import { describe } from "../errors";
import * as init from "../init";
import { keep } from "../scope";
import { Tensor, empty, handleOf } from "../tensor";
import { shapeText } from "../op-checks";
import { Module } from "./module";

/** Where and how to create a layer's parameters. */
export interface FactoryOptions {
  dtype?: Dtype;
  device?: Device;
}

function positiveInt(value: unknown, name: string): number {
  if (!Number.isInteger(value) || (value as number) < 1) throw new RangeError(`${name}: expected a positive integer, got ${describe(value)}`);
  return value as number;
}

function parameter(shape: number[], options: FactoryOptions, fill: (t: Tensor) => void): Tensor {
  const t = empty(shape, { dtype: options.dtype ?? "float32", device: options.device ?? "cpu" });
  fill(t);
  t.requiresGrad = true;
  return keep(t); // a layer built inside tidy() keeps its parameters
}

/** The uniform bias init of PyTorch's Linear: U(-1/√fan_in, 1/√fan_in). */
function linearBias(size: number, fanIn: number, options: FactoryOptions): Tensor {
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  return parameter([size], options, (t) => init.uniform_(t, -bound, bound));
}

/** `y = x Wᵀ + b` with `W: (out, in)`; weight kaiming_uniform_(a=√5) as in PyTorch. */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(inFeatures: number, outFeatures: number, options: FactoryOptions & { bias?: boolean } = {}) {
    super();
    this.inFeatures = positiveInt(inFeatures, "inFeatures");
    this.outFeatures = positiveInt(outFeatures, "outFeatures");
    this.weight = parameter([outFeatures, inFeatures], options, (t) => init.kaiming_uniform_(t, { a: Math.sqrt(5) }));
    this.bias = options.bias === false ? null : linearBias(outFeatures, inFeatures, options);
  }

  override forward(x: Tensor): Tensor {
    const input = handleOf(x, "input");
    // The parameters' metadata is cached on them, so checking them each call costs nothing; a
    // 1-D weight or a bias of another dtype would not fail in libtorch but compute something else.
    checkLinearParameters(this.weight, this.bias);
    try {
      return new Tensor(native.linear(input, handleOf(this.weight), this.bias ? handleOf(this.bias) : null));
    } catch (e) {
      explainLinearInput(x, this.weight);
      throw e;
    }
  }
}

/** How a layer stores its weight: PyTorch's Linear `(out, in)`, GPT-2's Conv1D `(in, out)`. */
type WeightLayout = "out_features, in_features" | "in_features, out_features";

/** Throws unless `weight` is a matrix and `bias` (if any) has its dtype and device. */
function checkLinearParameters(weight: Tensor, bias: Tensor | null, layout: WeightLayout = "out_features, in_features"): void {
  if (weight.ndim !== 2) throw new RangeError(`weight: expected a matrix (${layout}), got shape ${shapeText(weight.shape)}`);
  if (bias) checkSameKind(bias, "bias", weight);
}

/** After a failed linear call: the worded error when the input does not fit the weight. */
function explainLinearInput(x: Tensor, weight: Tensor, layout: WeightLayout = "out_features, in_features"): void {
  checkSameKind(x, "input", weight);
  const inFeatures = weight.shape[layout === "out_features, in_features" ? 1 : 0];
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== inFeatures)
    throw new RangeError(`input: expected last dimension ${inFeatures} (in_features), got shape ${shapeText(x.shape)}`);
}

/** libtorch's own messages ("expected scalar type Long but found Float") name neither tensor. */
function checkSameKind(t: Tensor, name: string, weight: Tensor): void {
  if (t.device !== weight.device)
    throw new Error(`${name}: is on ${t.device} but the layer weight is on ${weight.device}; move it with to("${weight.device}")`);
  if (t.dtype !== weight.dtype) throw new TypeError(`${name}: expected dtype ${weight.dtype} (the layer weight's dtype), got ${t.dtype}`);
}

/**
 * GPT-2's `Conv1D`: a Linear whose weight is stored transposed, `W: (in, out)`, `y = x W + b`.
 * LoRA treats it with `fanInFanOut`.
 */
export class Conv1D extends Module {
  weight: Tensor;
  bias: Tensor;
  readonly inFeatures: number;
  readonly outFeatures: number;

  /** Same argument order as transformers' Conv1D(nf, nx): output size first. */
  constructor(outFeatures: number, inFeatures: number, options: FactoryOptions = {}) {
    super();
    this.inFeatures = positiveInt(inFeatures, "inFeatures");
    this.outFeatures = positiveInt(outFeatures, "outFeatures");
    this.weight = parameter([inFeatures, outFeatures], options, (t) => init.normal_(t, 0, 0.02));
    this.bias = parameter([outFeatures], options, (t) => init.zeros_(t));
  }

  override forward(x: Tensor): Tensor {
    const input = handleOf(x, "input");
    checkLinearParameters(this.weight, this.bias, "in_features, out_features");
    try {
      return new Tensor(native.linearInOut(input, handleOf(this.weight), handleOf(this.bias)));
    } catch (e) {
      explainLinearInput(x, this.weight, "in_features, out_features");
      throw e;
    }
  }
}

/** Lookup table `(num, dim)`; weight normal_(0, 1) with the padding row zero, as in PyTorch. */
export class Embedding extends Module {
  weight: Tensor;
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  /** Row whose gradient is blocked (and which starts at zero), or null. */
  readonly paddingIdx: number | null;

  constructor(numEmbeddings: number, embeddingDim: number, options: FactoryOptions & { paddingIdx?: number | null } = {}) {
    super();
    this.numEmbeddings = positiveInt(numEmbeddings, "numEmbeddings");
    this.embeddingDim = positiveInt(embeddingDim, "embeddingDim");
    this.paddingIdx = normalizePaddingIdx(options.paddingIdx ?? null, numEmbeddings);
    const pad = this.paddingIdx;
    this.weight = parameter([numEmbeddings, embeddingDim], options, (t) => {
      init.normal_(t);
      if (pad !== null) init.zeros_(t.narrow(0, pad, 1));
    });
  }

  override forward(ids: Tensor): Tensor {
    return new Tensor(native.embedding(handleOf(ids, "ids"), handleOf(this.weight), this.paddingIdx ?? -1));
  }
}

/** PyTorch accepts a negative padding index counted from the end; ATen wants it in [0, num). */
export function normalizePaddingIdx(paddingIdx: number | null, numEmbeddings: number): number | null {
  if (paddingIdx === null) return null;
  if (!Number.isInteger(paddingIdx) || paddingIdx >= numEmbeddings || paddingIdx < -numEmbeddings) {
    throw new RangeError(`paddingIdx: expected an integer in [${-numEmbeddings}, ${numEmbeddings - 1}], got ${describe(paddingIdx)}`);
  }
  return paddingIdx < 0 ? paddingIdx + numEmbeddings : paddingIdx;
}
