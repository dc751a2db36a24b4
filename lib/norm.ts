/** Normalization ops (`torch.nn.functional.layer_norm`, `rms_norm`): one native call each. */
import { native } from "./binding";
import { Dtype, isFloatingDtype } from "./dtype";
import { describe } from "./errors";
import { checkSameDevice, optionalTensorArg, shapeText, tensorArg, withOpChecks } from "./op-checks";
import { Tensor, handleOf, optionsObject } from "./tensor";

/** `torch.finfo(dtype).eps`: the default epsilon of {@link rmsNorm}, as in PyTorch. */
export function finfoEps(dtype: Dtype): number {
  switch (dtype) {
    case "float64":
      return 2.220446049250313e-16;
    case "float16":
      return 0.0009765625;
    case "bfloat16":
      return 0.0078125;
    default:
      return 1.1920928955078125e-7;
  }
}

function normalizedShapeArg(op: string, value: unknown): number[] {
  const shape = typeof value === "number" ? [value] : value;
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new TypeError(`${op}: normalizedShape: expected a positive integer or a non-empty array of them, got ${describe(value)}`);
  }
  return shape;
}

function epsArg(op: string, value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value))
    throw new RangeError(`${op}: eps: expected a finite number >= 0, got ${describe(value)}`);
  return value;
}

/** The worded checks behind a failed norm call. */
function explainNorm(op: string, x: Tensor, shape: number[], affine: [string, Tensor | null][]): void {
  if (!isFloatingDtype(x.dtype)) throw new TypeError(`${op}: input: expected a floating-point tensor, got dtype ${x.dtype}`);
  const trailing = x.shape.slice(x.ndim - shape.length);
  if (shape.length > x.ndim || trailing.join() !== shape.join()) {
    throw new RangeError(`${op}: input: expected trailing dims ${shapeText(shape)} (normalizedShape), got shape ${shapeText(x.shape)}`);
  }
  for (const [name, t] of affine) {
    if (t && t.shape.join() !== shape.join())
      throw new RangeError(`${op}: ${name}: expected shape ${shapeText(shape)} (normalizedShape), got ${shapeText(t.shape)}`);
  }
  checkSameDevice(op, [["input", x], ...affine]);
}

/**
 * Layer normalization over the trailing dims named by `normalizedShape` (PyTorch's
 * `F.layer_norm`): `(x - mean) / sqrt(var + eps) * weight + bias`, with the biased variance.
 * One native call; forward and backward are ATen's fused kernels.
 *
 * @param x Input `(..., *normalizedShape)`.
 * @param normalizedShape The trailing shape to normalize over (a number for one dim).
 * @param options `weight` and `bias` of shape `normalizedShape` (optional), `eps` (default 1e-5).
 */
export function layerNorm(x: Tensor, normalizedShape: number | number[], options: { weight?: Tensor | null; bias?: Tensor | null; eps?: number } = {}): Tensor {
  const op = "layerNorm";
  optionsObject(options);
  tensorArg(op, "input", x);
  const shape = normalizedShapeArg(op, normalizedShape);
  const weight = optionalTensorArg(op, "weight", options.weight);
  const bias = optionalTensorArg(op, "bias", options.bias);
  const eps = epsArg(op, options.eps, 1e-5);
  return withOpChecks(
    op,
    () => new Tensor(native.layerNorm({ input: handleOf(x), normalizedShape: shape, weight: weight && handleOf(weight), bias: bias && handleOf(bias), eps })),
    () =>
      explainNorm(op, x, shape, [
        ["weight", weight],
        ["bias", bias],
      ]),
  );
}

/**
 * Root-mean-square normalization (PyTorch's `F.rms_norm`, Llama's RMSNorm):
 * `x * rsqrt(mean(x², trailing dims) + eps) * weight`. Half and bfloat16 inputs are normalized in
 * float32 and rounded back before the weight multiplies, as transformers' `LlamaRMSNorm` does.
 *
 * @param x Input `(..., *normalizedShape)`.
 * @param normalizedShape The trailing shape to normalize over (a number for one dim).
 * @param options `weight` of shape `normalizedShape` (optional), `eps` (default: the machine
 *   epsilon of x's dtype, `torch.finfo(dtype).eps`, as PyTorch).
 */
export function rmsNorm(x: Tensor, normalizedShape: number | number[], options: { weight?: Tensor | null; eps?: number | null } = {}): Tensor {
  const op = "rmsNorm";
  optionsObject(options);
  tensorArg(op, "input", x);
  const shape = normalizedShapeArg(op, normalizedShape);
  const weight = optionalTensorArg(op, "weight", options.weight);
  // libtorch would promote an integer weight and compute something else; a parameter's dtype is cached on it.
  if (weight && !isFloatingDtype(weight.dtype)) throw new TypeError(`${op}: weight: expected a floating-point tensor, got dtype ${weight.dtype}`);
  const eps = options.eps === undefined || options.eps === null ? finfoEps(x.dtype) : epsArg(op, options.eps, 0);
  return withOpChecks(
    op,
    () => new Tensor(native.rmsNorm({ input: handleOf(x), normalizedShape: shape, weight: weight && handleOf(weight), eps })),
    () => explainNorm(op, x, shape, [["weight", weight]]),
  );
}
