/** Parameter-free modules: dropout and activations. */
import { native } from "../binding";
import { isFloatingDtype } from "../dtype";
import { describe } from "../errors";
import { Tensor, handleOf } from "../tensor";
import { Module } from "./module";

/** Zeroes elements with probability `p` in training mode; identity in eval mode. */
export class Dropout extends Module {
  readonly p: number;
  constructor(p = 0.5) {
    super();
    if (typeof p !== "number" || !(p >= 0 && p <= 1)) throw new RangeError(`p: expected a probability in [0, 1], got ${describe(p)}`);
    this.p = p;
  }
  override forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? x.dropout(this.p, true) : x;
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  override forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** How {@link gelu} computes: the exact erf form, or the tanh approximation (GPT-2's "gelu_new"). */
export type GeluApproximation = "none" | "tanh";

/**
 * GELU as `torch.nn.functional.gelu(x, approximate=...)`: `"none"` is `x·Φ(x)`, `"tanh"` is
 * `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`. One native op (forward and backward) either way.
 */
export function gelu(x: Tensor, approximate: GeluApproximation = "none"): Tensor {
  if (approximate !== "none" && approximate !== "tanh") throw new TypeError(`approximate: expected "none" or "tanh", got ${describe(approximate)}`);
  return new Tensor(native.geluActivation(handleOf(x, "input"), approximate));
}

/** Gaussian error linear unit: the exact erf form, or with `approximate: "tanh"` the tanh form, as PyTorch's `nn.GELU`. */
export class GELU extends Module {
  readonly approximate: GeluApproximation;
  constructor(options: { approximate?: GeluApproximation } = {}) {
    super();
    const approximate = options.approximate ?? "none";
    if (approximate !== "none" && approximate !== "tanh") throw new TypeError(`approximate: expected "none" or "tanh", got ${describe(approximate)}`);
    this.approximate = approximate;
  }
  override forward(x: Tensor): Tensor {
    return this.approximate === "none" ? x.gelu() : gelu(x, this.approximate);
  }
}

/** Hyperbolic tangent. */
export class Tanh extends Module {
  override forward(x: Tensor): Tensor {
    return x.tanh();
  }
}

/** Logistic sigmoid. */
export class Sigmoid extends Module {
  override forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}

/** x · sigmoid(x) (PyTorch's `nn.SiLU`, the activation of Llama's MLP). */
export class SiLU extends Module {
  override forward(x: Tensor): Tensor {
    const input = handleOf(x, "input");
    try {
      return new Tensor(native.siluActivation(input));
    } catch (e) {
      // Checked after a failure only: a forward pass pays for no dtype read.
      if (!isFloatingDtype(x.dtype)) throw new TypeError(`SiLU: input: expected a floating-point tensor, got ${x.dtype}`);
      throw e;
    }
  }
}

/** Returns its input unchanged (PyTorch's `nn.Identity`): a placeholder where a layer is optional. */
export class Identity extends Module {
  override forward<T>(x: T): T {
    return x;
  }
}
