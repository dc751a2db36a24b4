/** Normalization layers: LayerNorm and RMSNorm, with PyTorch's init and state-dict keys. */
import { describe } from "../errors";
import { layerNorm, rmsNorm } from "../norm";
import { Tensor, ones, zeros } from "../tensor";
import { FactoryOptions } from "./layers";
import { Module } from "./module";

function shapeOf(normalizedShape: number | number[]): number[] {
  const shape = typeof normalizedShape === "number" ? [normalizedShape] : normalizedShape;
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new TypeError(`normalizedShape: expected a positive integer or a non-empty array of them, got ${describe(normalizedShape)}`);
  }
  return [...shape];
}

function flag(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") throw new TypeError(`${name}: expected a boolean, got ${describe(value)}`);
  return value;
}

const tensorOptions = (o: FactoryOptions) => ({ dtype: o.dtype ?? "float32", device: o.device ?? "cpu", requiresGrad: true }) as const;

/**
 * PyTorch's `nn.LayerNorm`: normalizes the trailing `normalizedShape` dims; `weight` starts at
 * ones and `bias` at zeros (state-dict keys `weight`, `bias`), both absent when
 * `elementwiseAffine` is false; `bias: false` drops only the bias.
 */
export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  readonly normalizedShape: number[];
  readonly eps: number;

  constructor(normalizedShape: number | number[], options: FactoryOptions & { eps?: number; elementwiseAffine?: boolean; bias?: boolean } = {}) {
    super();
    this.normalizedShape = shapeOf(normalizedShape);
    this.eps = options.eps ?? 1e-5;
    if (typeof this.eps !== "number" || !(this.eps >= 0)) throw new RangeError(`eps: expected a number >= 0, got ${describe(options.eps)}`);
    const affine = flag(options.elementwiseAffine, "elementwiseAffine", true);
    const withBias = flag(options.bias, "bias", true);
    this.weight = affine ? ones(this.normalizedShape, tensorOptions(options)) : null;
    this.bias = affine && withBias ? zeros(this.normalizedShape, tensorOptions(options)) : null;
  }

  override forward(x: Tensor): Tensor {
    return layerNorm(x, this.normalizedShape, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}

/**
 * PyTorch's `nn.RMSNorm` (and transformers' `LlamaRMSNorm`): `x * rsqrt(mean(x²) + eps) * weight`
 * over the trailing `normalizedShape` dims; `weight` starts at ones (state-dict key `weight`).
 * `eps` defaults to the machine epsilon of the input's dtype, as PyTorch.
 */
export class RMSNorm extends Module {
  weight: Tensor | null;
  readonly normalizedShape: number[];
  readonly eps: number | null;

  constructor(normalizedShape: number | number[], options: FactoryOptions & { eps?: number | null; elementwiseAffine?: boolean } = {}) {
    super();
    this.normalizedShape = shapeOf(normalizedShape);
    this.eps = options.eps ?? null;
    if (this.eps !== null && (typeof this.eps !== "number" || !(this.eps >= 0)))
      throw new RangeError(`eps: expected a number >= 0 or null, got ${describe(options.eps)}`);
    this.weight = flag(options.elementwiseAffine, "elementwiseAffine", true) ? ones(this.normalizedShape, tensorOptions(options)) : null;
  }

  override forward(x: Tensor): Tensor {
    return rmsNorm(x, this.normalizedShape, { weight: this.weight, eps: this.eps });
  }
}
